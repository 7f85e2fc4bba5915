"""torchvision's ``models.feature_extraction``: intermediate outputs of a model, by node name.

A model is traced with ``ember.fx`` (in train mode and in eval mode: control flow on
``self.training`` may differ). Every node gets torchvision's *qualified name*: a leaf module's
call is its module path (``layer1.0.conv1``); a function or method called inside a traced-through
module is that module's path and the op's name (``layer1.0.add``). A name repeated within the
same module gets ``_1``, ``_2``, ... in the order of the calls (``layer1.0.relu_1``: the block's
ReLU module called a second time), counted per module rather than over the whole graph.

:func:`get_graph_node_names` lists the names; :func:`create_feature_extractor` returns a
``GraphModule`` whose ``forward`` returns ``{output name: tensor}`` for the nodes asked for. A
name may also be a module path that is not a leaf (``"layer1"``): it stands for the last node
inside that module, its output.
"""

from __future__ import annotations

import re
import warnings
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ember import nn
from ember.fx import Graph, GraphModule, Tracer
from ember.fx.graph_module import _copy_attr
from ember.fx.node import Node

__all__ = ["create_feature_extractor", "get_graph_node_names"]


class NodePathTracer(Tracer):
    """A tracer that records each node's qualified name (see the module docstring).

    Args:
        leaf_modules: module classes to record as calls rather than trace through.
        autowrap_modules, autowrap_functions, param_shapes_constant: as ``ember.fx.Tracer``.
    """

    def __init__(self, *args: Any, leaf_modules: list[type] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._leaf_types = tuple(leaf_modules or ())
        self.current_module_qualname = ""
        self.node_to_qualname: OrderedDict[Node, str] = OrderedDict()

    def is_leaf_module(self, m: nn.Module, module_qualname: str) -> bool:
        if self._leaf_types and isinstance(m, self._leaf_types):
            return True
        return super().is_leaf_module(m, module_qualname)

    def call_module(self, m: nn.Module, forward: Callable, args: tuple, kwargs: dict) -> Any:
        outer = self.current_module_qualname
        try:
            self.current_module_qualname = self.path_of_module(m)
            return super().call_module(m, forward, args, kwargs)
        finally:
            self.current_module_qualname = outer

    def create_proxy(self, kind: str, target: Any, args: tuple, kwargs: dict, *a, **kw):
        proxy = super().create_proxy(kind, target, args, kwargs, *a, **kw)
        self.node_to_qualname[proxy.node] = self._qualname(proxy.node)
        return proxy

    def _qualname(self, node: Node) -> str:
        name = self.current_module_qualname
        if node.op != "call_module":
            name = f"{name}.{node.name}" if name else node.name
        # without the graph-wide counter fx gave the op ("add_3" -> "add"); torchvision strips
        # a trailing number from module paths too ("ln_2" -> "ln"), and so does this
        name = re.sub(r"(.)_[0-9]+$", r"\1", name)
        # counted per module: the latest earlier node of this name or of a numbered copy
        pattern = re.compile(rf"{re.escape(name)}(_([0-9]+))?$")
        for earlier in reversed(self.node_to_qualname.values()):
            found = pattern.match(earlier)
            if found:
                return f"{name}_{int(found.group(2) or 0) + 1}"
        return name


def _tracer_kwargs(given: dict[str, Any] | None) -> dict[str, Any]:
    """The user's tracer arguments plus torchvision's defaults: ``ember.vision.ops``' modules
    are leaves (``Conv2dNormActivation`` is one node) and its functions are wrapped."""
    import inspect
    import math

    from ember.vision import ops

    leaves = [c for _, c in inspect.getmembers(ops, inspect.isclass) if issubclass(c, nn.Module)]
    kwargs = dict(given or {})
    kwargs["autowrap_modules"] = tuple({*kwargs.get("autowrap_modules", ()), math, ops})
    kwargs["leaf_modules"] = list({*kwargs.get("leaf_modules", ()), *leaves})
    return kwargs


def _trace(model: nn.Module, train: bool, tracer_kwargs, concrete_args):
    was_training = model.training
    model.train(train)
    try:
        tracer = NodePathTracer(**_tracer_kwargs(tracer_kwargs))
        graph = tracer.trace(model, concrete_args=concrete_args)
    finally:
        model.train(was_training)
    names = OrderedDict(tracer.node_to_qualname)
    for node in graph.nodes:  # the inputs are named as they are (placeholders)
        if node.op == "placeholder":
            names[node] = node.name
    return graph, names


def _ordered_names(graph: Graph, names: dict[Node, str]) -> list[str]:
    return [names[n] for n in graph.nodes if n in names]


def get_graph_node_names(
    model: nn.Module,
    tracer_kwargs: dict[str, Any] | None = None,
    suppress_diff_warning: bool = False,
    concrete_args: dict[str, Any] | None = None,
) -> tuple[list[str], list[str]]:
    """The qualified node names of ``model`` traced in train mode and in eval mode, in
    execution order (see the module docstring); the names to give
    :func:`create_feature_extractor`. Warns when the two lists differ unless
    ``suppress_diff_warning``."""
    train = _ordered_names(*_trace(model, True, tracer_kwargs, concrete_args))
    eval_ = _ordered_names(*_trace(model, False, tracer_kwargs, concrete_args))
    if train != eval_ and not suppress_diff_warning:
        _warn_modes_differ()
    return train, eval_


def _warn_modes_differ() -> None:
    warnings.warn(
        "NOTE: The nodes obtained by tracing the model in eval mode are a subsequence of those "
        "obtained in train mode. When choosing nodes for feature extraction, you may need to "
        "specify output nodes for train and eval mode separately.",
        stacklevel=3,
    )


def _as_dict(nodes: list[str] | dict[str, str] | None) -> dict[str, str] | None:
    if nodes is None or isinstance(nodes, dict):
        return None if nodes is None else {str(k): str(v) for k, v in nodes.items()}
    return {str(n): str(n) for n in nodes}


def _select(graph: Graph, names: dict[Node, str], wanted: dict[str, str], mode: str) -> Graph:
    """Make ``graph`` return ``{output name: node}`` for the wanted nodes, the rest removed."""
    by_name = {q: n for n, q in names.items()}
    order = list(graph.nodes)
    picked: OrderedDict[str, Node] = OrderedDict()
    for query, out_name in wanted.items():
        node = by_name.get(query)
        if node is None:  # a module path: the last node inside it
            inside = [n for n in order if names.get(n, "").startswith(query + ".")]
            node = inside[-1] if inside else None
        if node is None:
            raise ValueError(
                f"node: '{query}' is not present in model ({mode} mode). Hint: use "
                "get_graph_node_names to make sure the return_nodes you specified are present. "
                "It may even be that you need to specify them separately for train and eval mode."
            )
        picked[out_name] = node
    for node in reversed(order):
        if node.op == "output":
            graph.erase_node(node)
    graph.output(dict(picked))
    graph.eliminate_dead_code()
    graph.lint()
    return graph


class DualGraphModule(GraphModule):
    """A ``GraphModule`` with one graph for train mode and one for eval mode; ``train()`` and
    ``eval()`` switch ``forward`` between them."""

    def __init__(
        self,
        root: nn.Module,
        train_graph: Graph,
        eval_graph: Graph,
        class_name: str = "GraphModule",
    ) -> None:
        nn.Module.__init__(self)
        type(self).__name__ = type(self).__qualname__ = class_name
        self.training = root.training
        for graph in (train_graph, eval_graph):
            for node in graph.nodes:
                if node.op in ("get_attr", "call_module"):
                    _copy_attr(root, self, node.target)
        self.train_graph, self.eval_graph = train_graph, eval_graph
        self.graph = train_graph if self.training else eval_graph

    def train(self, mode: bool = True) -> DualGraphModule:
        if mode is not self.training:
            self.graph = self.train_graph if mode else self.eval_graph
        return super().train(mode)


def create_feature_extractor(
    model: nn.Module,
    return_nodes: list[str] | dict[str, str] | None = None,
    train_return_nodes: list[str] | dict[str, str] | None = None,
    eval_return_nodes: list[str] | dict[str, str] | None = None,
    tracer_kwargs: dict[str, Any] | None = None,
    suppress_diff_warning: bool = False,
    concrete_args: dict[str, Any] | None = None,
) -> GraphModule:
    """A module returning ``{name: intermediate output}`` of ``model``.

    Args:
        model: the model to extract from (traced with ``ember.fx``).
        return_nodes: the nodes to return, as a list of qualified names (see
            :func:`get_graph_node_names`) or module paths, or a dict mapping them to the names
            of the outputs (``{"layer4": "feat"}``).
        train_return_nodes, eval_return_nodes: separate choices for train and eval mode (both,
            instead of ``return_nodes``).
        tracer_kwargs: keyword arguments of the tracer (``leaf_modules``,
            ``autowrap_functions``, ...).
        suppress_diff_warning: do not warn when the two modes' graphs differ.
        concrete_args: arguments fixed while tracing (as ``ember.fx.symbolic_trace``).
    """
    if return_nodes is None and (train_return_nodes is None or eval_return_nodes is None):
        raise ValueError(
            "Either `return_nodes` or `train_return_nodes` and `eval_return_nodes` together, "
            "should be specified"
        )
    if return_nodes is not None and (
        train_return_nodes is not None or eval_return_nodes is not None
    ):
        raise ValueError(
            "If `train_return_nodes` and `eval_return_nodes` are specified, then both should "
            "be specified"
        )
    wanted = {
        "train": _as_dict(return_nodes if return_nodes is not None else train_return_nodes),
        "eval": _as_dict(return_nodes if return_nodes is not None else eval_return_nodes),
    }
    graphs, listed = {}, {}
    for mode in ("train", "eval"):
        graph, names = _trace(model, mode == "train", tracer_kwargs, concrete_args)
        listed[mode] = _ordered_names(graph, names)
        graphs[mode] = _select(graph, names, wanted[mode], mode)
    if listed["train"] != listed["eval"] and not suppress_diff_warning:
        _warn_modes_differ()
    name = type(model).__name__
    return DualGraphModule(model, graphs["train"], graphs["eval"], class_name=name)
