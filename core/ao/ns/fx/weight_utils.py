"""Reading a layer's weights out of a graph node, float or quantized (torch.ao.ns.fx.weight_utils).

A module call gives its module's weights: ``weight`` (a tensor, or the method a quantized
module has), the first module of a fused one (``nni.ConvReLU2d`` holds ``Conv2d, ReLU``), and
every ``weight_ih_l*`` / ``weight_hh_l*`` of a recurrent layer. A functional ``linear`` /
``conv*d`` gives its weight argument, looked up through observers and dequantizations to the
attribute it reads.
"""

from __future__ import annotations

import functools
from typing import Any

from ....fx import GraphModule, Node
from ....tensor import Tensor
from .graph_matcher import node_op_key

__all__ = [
    "extract_weight_from_node",
    "get_target_type_str",
    "get_fqn",
    "stored_attr",
    "attr_value",
]

_WEIGHTED_FUNCTIONS = {"linear", "conv1d", "conv2d", "conv3d"}


def get_target_type_str(gm: GraphModule, node: Node) -> str:
    """``module.Class`` of a module call, ``module.function`` of a function, or the method name."""
    if node.op == "call_module":
        cls = type(gm.get_submodule(node.target))
        return f"{cls.__module__}.{cls.__qualname__}"
    if node.op == "call_function":
        t = node.target
        return f"{getattr(t, '__module__', None) or '<unknown>'}.{getattr(t, '__qualname__', t)}"
    return str(node.target)


def get_fqn(gm: GraphModule, node: Node) -> str:
    """The path of the module a node came from (``""`` for the model's own forward)."""
    if node.op == "call_module":
        return str(node.target)
    stack = node.meta.get("nn_module_stack")
    return list(stack.values())[-1][0] if stack else ""


def _plain(w: Any) -> Tensor | None:
    if callable(w) and not isinstance(w, Tensor):
        w = w()  # quantized modules expose weight() and keep the packed codes
    return w.detach() if isinstance(w, Tensor) else None


def _module_weights(mod: Any) -> list[Tensor] | None:
    from ...nn.intrinsic.modules.fused import _FusedModule

    if isinstance(mod, _FusedModule):
        mod = mod[0]
    packed = getattr(mod, "_all_weight_values", None)
    if packed is not None:  # a dynamic quantized LSTM / GRU: (w_ih, w_hh, b_ih, b_hh) a layer
        return [w for p in packed for w in (p.param[0], p.param[1])]
    if hasattr(mod, "weight_ih_l0"):  # a float / QAT recurrent layer: (ih, hh) a layer
        sfx = ("", "_reverse") if getattr(mod, "bidirectional", False) else ("",)
        names = [
            f"weight_{g}_l{layer}{s}"
            for layer in range(mod.num_layers)
            for s in sfx
            for g in ("ih", "hh")
        ]
        return [_plain(getattr(mod, n)) for n in names]
    w = _plain(getattr(mod, "weight", None))
    return None if w is None else [w]


def stored_attr(gm: GraphModule, node: Any) -> Node | None:
    """The ``get_attr`` node a value reads through observers, fake quants and casts, or
    None when the value is computed (or is not a node)."""
    while isinstance(node, Node) and node.op in ("call_module", "call_function", "call_method"):
        if node_op_key(gm, node) is not None or not node.args:
            return None  # a computed value, not a stored one
        node = node.args[0]
    return node if isinstance(node, Node) and node.op == "get_attr" else None


def attr_value(gm: GraphModule, node: Node) -> Any:
    """The object a ``get_attr`` node reads."""
    return functools.reduce(getattr, node.target.split("."), gm)


def extract_weight_from_node(gm: GraphModule, node: Node) -> list[Tensor] | None:
    """The weights ``node`` applies, or None when it has none."""
    if node.op == "call_module":
        return _module_weights(gm.get_submodule(node.target))
    if node_op_key(gm, node) in _WEIGHTED_FUNCTIONS:
        w = node.args[1] if len(node.args) > 1 else node.kwargs.get("weight")
        attr = stored_attr(gm, w)
        t = None if attr is None else _plain(attr_value(gm, attr))
        return None if t is None else [t]
    return None
