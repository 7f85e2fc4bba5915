"""A saved fx graph can only reach ember's tensor functions and operator's arithmetic: names
that would reach files, processes, global state or arbitrary code are refused on load."""

from __future__ import annotations

import operator

import pytest

import ember
from ember.fx import Graph, graph_from_json, graph_to_json


def _graph_calling(target, *args):
    g = Graph()
    x = g.placeholder("x")
    g.output(g.call_function(target, (x, *args)))
    return graph_to_json(g)


@pytest.mark.parametrize(
    "target,args",
    [
        (operator.attrgetter, ()),
        (operator.methodcaller, ("system",)),
        (operator.call, ()),
        (ember.save, ("/tmp/x",)),
        (ember.load, ()),
        (ember.manual_seed, ()),
        (ember.set_default_dtype, ()),
        (ember.use_deterministic_algorithms, ()),
    ],
)
def test_unsafe_targets_are_refused(target, args):
    text = _graph_calling(target, *args)
    with pytest.raises(ValueError, match="cannot resolve call_function target"):
        graph_from_json(text)


@pytest.mark.parametrize(
    "target",
    [operator.add, operator.getitem, ember.relu, ember.nn.functional.linear, ember.linalg.svdvals],
)
def test_tensor_targets_round_trip(target):
    g = graph_from_json(_graph_calling(target))
    (call,) = [n for n in g.nodes if n.op == "call_function"]
    assert call.target is target
