"""``ember.fx.experimental.optimization``: torch.fx.experimental.optimization's ``fuse`` (fold
each BatchNorm that directly follows a convolution or a Linear into it, for inference)."""

from __future__ import annotations

import copy
from typing import Any

from ...nn import BatchNorm1d, BatchNorm2d, BatchNorm3d, Conv1d, Conv2d, Conv3d, Linear, Module
from ...nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval
from ..graph_module import GraphModule
from ..node import Node
from ..tracer import symbolic_trace

__all__ = ["fuse", "matches_module_pattern", "replace_node_module"]

_PATTERNS = [
    (Conv1d, BatchNorm1d),
    (Conv2d, BatchNorm2d),
    (Conv3d, BatchNorm3d),
    (Linear, BatchNorm1d),
]


def _parent_name(target: str) -> tuple[str, str]:
    *parent, name = target.rsplit(".", 1)
    return (parent[0] if parent else ""), name


def matches_module_pattern(pattern: tuple, node: Node, modules: dict[str, Any]) -> bool:
    """Whether ``node`` calls a module of type ``pattern[-1]`` whose only input is a node
    calling a module of type ``pattern[-2]`` (and so on back through ``pattern``)."""
    if len(node.args) == 0:
        return False
    nodes: tuple = (node.args[0], node)
    for expected_type, current_node in zip(pattern, nodes):
        if not isinstance(current_node, Node) or current_node.op != "call_module":
            return False
        if not isinstance(current_node.target, str) or current_node.target not in modules:
            return False
        if type(modules[current_node.target]) is not expected_type:
            return False
    return True


def replace_node_module(node: Node, modules: dict[str, Any], new_module: Module) -> None:
    """Put ``new_module`` where the module ``node`` calls lives (in its parent and in
    ``modules``)."""
    if not isinstance(node.target, str):
        raise TypeError(f"replace_node_module: node {node} does not call a module by name")
    parent_name, name = _parent_name(node.target)
    modules[node.target] = new_module
    setattr(modules[parent_name], name, new_module)


def fuse(model: Module, inplace: bool = False, no_trace: bool = False) -> Module:
    """Fold every ``BatchNorm`` that directly follows a ``Conv1d/2d/3d`` or ``Linear`` (and is
    that layer's only user) into the layer, as torch.fx.experimental.optimization.fuse.

    The model must be in eval mode (``"Fusion only for eval!"`` otherwise). Returns a
    ``GraphModule`` (``model`` itself stays unchanged unless ``inplace``); with ``no_trace``,
    ``model`` must already be a ``GraphModule``.
    """
    if not inplace:
        model = copy.deepcopy(model)
    if not no_trace or not isinstance(model, GraphModule):
        fx_model = symbolic_trace(model)
    else:
        fx_model = model
    modules = dict(fx_model.named_modules())
    new_graph = copy.deepcopy(fx_model.graph)
    for pattern in _PATTERNS:
        for node in list(new_graph.nodes):
            if not matches_module_pattern(pattern, node, modules):
                continue
            if len(node.args[0].users) > 1:  # the layer's output is used elsewhere too
                continue
            first, bn = modules[node.args[0].target], modules[node.target]
            if not bn.track_running_stats:
                continue
            if pattern[0] is Linear:
                fused = fuse_linear_bn_eval(first, bn)
            else:
                fused = fuse_conv_bn_eval(first, bn)
            replace_node_module(node.args[0], modules, fused)
            node.replace_all_uses_with(node.args[0])
            new_graph.erase_node(node)
    return GraphModule(fx_model, new_graph)
