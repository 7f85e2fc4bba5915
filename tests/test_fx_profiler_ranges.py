"""Profiler ranges as graph operators, and tracers that record where nodes come from.

The idioms of pytorch/examples' fx programs (profiling_tracer.py, module_tracer.py), written
here anew: a ``Tracer`` subclass that swaps ``record_function``'s ``__enter__``/``__exit__``
for ``ops.profiler._record_function_enter``/``_exit`` calls in the graph, so that the traced
module's runs show the range; and one whose ``create_proxy`` (annotated with
``fx.node.Target``) notes the module path of every node. torch 2.13 is the reference.
"""

from __future__ import annotations

from typing import Any

import pytest

import ember

torch = pytest.importorskip("torch")


def _tagged_model(lib):
    class Block(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lib.nn.Linear(3, 4)

        def forward(self, x):
            with lib.profiler.record_function("block"):
                return lib.relu(self.lin(x))

    return Block()


def _range_tracer(lib):
    """A tracer that keeps ``record_function`` blocks as profiler ops in the graph."""
    rf = lib.autograd.profiler.record_function

    class RangeTracer(lib.fx.Tracer):
        def trace(self, root, concrete_args=None):
            enter, exit_ = rf.__enter__, rf.__exit__

            def fake_enter(rec):
                rec._handle = self.create_proxy(
                    "call_function", lib.ops.profiler._record_function_enter, (rec.name,), {}
                )
                return rec._handle

            def fake_exit(rec, *exc):
                lib.ops.profiler._record_function_exit(rec._handle)
                rec._handle = None

            rf.__enter__, rf.__exit__ = fake_enter, fake_exit
            try:
                return super().trace(root, concrete_args)
            finally:
                rf.__enter__, rf.__exit__ = enter, exit_

    return RangeTracer


@pytest.mark.parametrize("lib", [ember, torch], ids=["ember", "torch"])
def test_record_function_kept_in_the_graph(lib):
    model = _tagged_model(lib)
    tracer = _range_tracer(lib)()
    graph = tracer.trace(model)
    traced = lib.fx.GraphModule(tracer.root, graph)
    calls = [n for n in graph.nodes if n.op == "call_function"]
    assert [n.name for n in calls][0] == "_record_function_enter"
    assert calls[-1].name == "_record_function_exit"
    # both survive dead-code elimination (the exit's value is never used)
    n_before = len(graph.nodes)
    graph.eliminate_dead_code()
    assert len(graph.nodes) == n_before
    traced.recompile()
    assert "ops.profiler._record_function_enter('block')" in traced.code
    x = lib.randn(2, 3)
    with lib.autograd.profiler.profile() as prof:
        out = traced(x)
    names = [e.name for e in prof.function_events]
    assert "block" in names
    assert lib.equal(out, model(x))
    # plain symbolic_trace drops the range, in both
    plain = lib.fx.symbolic_trace(model)
    with lib.autograd.profiler.profile() as prof:
        plain(x)
    assert "block" not in [e.name for e in prof.function_events]


def test_profiler_ops_eagerly():
    with ember.profiler.profile() as prof:
        h = ember.ops.profiler._record_function_enter("outer", "extra")
        ember.ones(3).sum()
        ember.ops.profiler._record_function_exit(h)
        h2 = ember.ops.profiler._record_function_enter_new("second")
        ember.ops.profiler._record_function_exit.default(h2)
    names = [e.name for e in prof.events()]
    assert "outer" in names and "second" in names
    assert h.dtype == ember.int64 and h.dim() == 0
    with pytest.raises(RuntimeError, match="handle .* is not an open range"):
        ember.ops.profiler._record_function_exit(h)  # closed already
    with pytest.raises(TypeError, match="name must be a str"):
        ember.ops.profiler._record_function_enter(3)
    # outside a profiler the ops still pair up (nothing is recorded)
    ember.ops.profiler._record_function_exit(ember.ops.profiler._record_function_enter("x"))


def _path_tracer(lib):
    """A tracer that notes the qualified path of the module each node was created in."""

    class PathTracer(lib.fx.Tracer):
        current = None

        def call_module(self, m, forward, args, kwargs):
            prev, self.current = self.current, self.path_of_module(m)
            try:
                return super().call_module(m, forward, args, kwargs)
            finally:
                self.current = prev

        def create_proxy(
            self,
            kind: str,
            target: lib.fx.node.Target,
            args: tuple[Any, ...],
            kwargs: dict[str, Any],
            name: str | None = None,
            type_expr: Any | None = None,
            *extra,
        ):
            proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, *extra)
            proxy.node.meta["path"] = self.current
            return proxy

        def is_leaf_module(self, m, qualname):  # trace through everything but Linear
            return isinstance(m, lib.nn.Linear)

    return PathTracer


@pytest.mark.parametrize("lib", [ember, torch], ids=["ember", "torch"])
def test_module_path_tracer(lib):
    class Net(lib.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = lib.nn.Sequential(lib.nn.Linear(3, 3), lib.nn.ReLU())
            self.head = lib.nn.Linear(3, 2)

        def forward(self, x):
            return self.head(self.body(x) + x)

    graph = _path_tracer(lib)().trace(Net())
    paths = {n.name: n.meta.get("path") for n in graph.nodes}
    # the ReLU module is traced through: its functional call is noted under its path
    assert paths == {
        "x": None,
        "body_0": "body.0",
        "relu": "body.1",
        "add": None,
        "head": "head",
        "output": None,
    }
    assert lib.fx.node.Target is not None
