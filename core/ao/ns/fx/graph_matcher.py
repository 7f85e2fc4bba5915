"""Pairing the layers of two graphs of one model (a float or prepared model and the model
quantized from it), as torch.ao.ns's graph matcher does.

Each graph is cut into *subgraphs*: one matchable node (a module call, a function or a
method; not an observer, a logger, a dtype cast or a shape op), grown forward along a
single-user chain where a quantized model fuses ops into one (``conv -> batch_norm -> relu``,
``linear -> relu``, ``add -> relu``). The subgraphs of the two graphs are then paired from
the outputs backwards, and each pair must be *related*: the same op in float, fused, QAT,
quantized, reference or dynamic form (``nn.Conv2d``, ``F.conv2d``, ``nni.ConvReLU2d`` and
``nnq.Conv2d`` all read as ``conv2d``). Graphs whose layers do not pair raise
:class:`GraphMatchingException` naming the two nodes.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

from ....fx import GraphModule, Node
from ....nn import Identity, Module

__all__ = ["GraphMatchingException", "Subgraph", "get_matching_subgraph_pairs", "node_op_key"]


class GraphMatchingException(Exception):
    """The two graphs do not have the same layers in the same order."""


@dataclass
class Subgraph:
    """``start_node`` .. ``end_node`` of one layer."""

    start_node: Node
    end_node: Node

    @property
    def base_op_node(self) -> Node:
        """The node holding the layer's weights and naming it: the chain's first op."""
        return self.start_node


# ops a quantized graph folds into the op before them
_CONVS = {"conv1d", "conv2d", "conv3d"}
_FUSABLE_AFTER = _CONVS | {"linear", "add", "mul", "batch_norm2d", "batch_norm3d"}
_ACTIVATIONS = {"relu", "relu6", "leaky_relu", "tanh", "hardtanh"}
_BATCH_NORMS = {"batch_norm", "batch_norm1d", "batch_norm2d", "batch_norm3d"}

# never paired: dtype casts, observers' neighbours and shape bookkeeping (torch's list)
_UNMATCHABLE_FUNCTIONS = {
    "quantize_per_tensor",
    "quantize_per_channel",
    "quantize_per_tensor_dynamic",
    "dequantize",
    "getitem",
    "getattr",
}
_UNMATCHABLE_METHODS = {
    "to", "dequantize", "float", "reshape", "view", "unsqueeze_", "unsqueeze", "transpose",
    "squeeze_", "squeeze", "size", "shape", "resize_", "repeat_interleave", "repeat",
    "permute", "numel", "mean", "detach_", "detach", "contiguous", "clamp", "chunk",
}  # fmt: skip
_FUNCTION_ALIASES = {"iadd": "add", "imul": "mul", "add_relu": "add", "mul_relu": "mul"}
_FUSED_CLASS = re.compile(r"(ConvTranspose|Conv|Linear|BN)(Bn)?(Add)?(ReLU|LeakyReLU|Tanh)?(\dd)?")


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z][a-z])", "_", name).lower()


def _module_key(mod: Module) -> str:
    name = type(mod).__name__
    m = _FUSED_CLASS.fullmatch(name)
    if m and (m.group(2) or m.group(3) or m.group(4)):  # a fused class: the op it starts with
        base = {"BN": "BatchNorm"}.get(m.group(1), m.group(1))
        name = base if base == "Linear" else base + (m.group(5) or "")
    return _snake(name)


def _is_unmatchable_module(mod: Module) -> bool:
    from ...quantization.fake_quantize import FakeQuantizeBase
    from ...quantization.observer import ObserverBase
    from ...quantization.stubs import DeQuantStub, QuantStub
    from ._loggers import OutputLogger

    if isinstance(mod, (ObserverBase, FakeQuantizeBase, OutputLogger, Identity)):
        return True
    if isinstance(mod, (QuantStub, DeQuantStub)):
        return True
    return type(mod).__name__ in {"Quantize", "DeQuantize"} and "quantized" in type(mod).__module__


def _function_name(target: Any) -> str:
    if target is operator.getitem:
        return "getitem"
    name = getattr(target, "__name__", str(target)).strip("_")
    return _FUNCTION_ALIASES.get(name, name)


def node_op_key(gm: GraphModule, node: Node) -> str | None:
    """The op family of ``node`` (``"conv2d"``, ``"linear"``, ``"add"``, ...), or None when
    the node is never paired (placeholders, constants, observers, loggers, dtype casts,
    shape ops)."""
    if node.op == "call_module":
        mod = gm.get_submodule(node.target)
        return None if _is_unmatchable_module(mod) else _module_key(mod)
    if node.op == "call_function":
        name = _function_name(node.target)
        return None if name in _UNMATCHABLE_FUNCTIONS else name
    if node.op == "call_method":
        name = _FUNCTION_ALIASES.get(node.target, node.target)
        return None if name in _UNMATCHABLE_METHODS else name
    return None


def _single_tensor_user(node: Node) -> Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 and users[0].args and users[0].args[0] is node else None


def _skip_observers(gm: GraphModule, node: Node) -> Node:
    """``node`` or the observer (chain) watching it, whose output the rest of the graph reads."""
    from ...quantization.fake_quantize import FakeQuantizeBase
    from ...quantization.observer import ObserverBase

    while True:
        nxt = _single_tensor_user(node)
        if nxt is None or nxt.op != "call_module":
            return node
        if not isinstance(gm.get_submodule(nxt.target), (ObserverBase, FakeQuantizeBase)):
            return node
        node = nxt


def subgraphs(gm: GraphModule) -> list[Subgraph]:
    """The layers of ``gm`` in graph order, each grown over the ops a quantized model fuses."""
    out, absorbed = [], set()
    for node in gm.graph.nodes:
        if node in absorbed:
            continue
        key = node_op_key(gm, node)
        if key is None:
            continue
        end = node
        for follows, allowed in ((_CONVS, _BATCH_NORMS), (_FUSABLE_AFTER, _ACTIVATIONS)):
            nxt = _single_tensor_user(_skip_observers(gm, end))
            if key in follows and nxt is not None and node_op_key(gm, nxt) in allowed:
                end = nxt
                absorbed.add(nxt)
        out.append(Subgraph(node, end))
    return out


def _describe(gm: GraphModule, node: Node) -> str:
    target = (
        type(gm.get_submodule(node.target)).__name__ if node.op == "call_module" else node.target
    )
    return f"'{node.name}' ({node.op} {getattr(target, '__name__', target)})"


def get_matching_subgraph_pairs(
    gm_a: GraphModule, gm_b: GraphModule
) -> dict[str, tuple[Subgraph, Subgraph]]:
    """``{name: (subgraph of a, subgraph of b)}`` in graph order, named by ``gm_b``'s nodes.

    Raises:
        GraphMatchingException: the graphs have a different number of layers, or two layers
            in the same place are unrelated ops.
    """
    sa, sb = subgraphs(gm_a), subgraphs(gm_b)
    pairs: list[tuple[Subgraph, Subgraph]] = []
    for a, b in zip(reversed(sa), reversed(sb)):
        ka, kb = node_op_key(gm_a, a.base_op_node), node_op_key(gm_b, b.base_op_node)
        if ka != kb:
            raise GraphMatchingException(
                f"{_describe(gm_a, a.base_op_node)} of model a and "
                f"{_describe(gm_b, b.base_op_node)} of model b are in the same place but are "
                f"not related ops ({ka} vs {kb})"
            )
        pairs.append((a, b))
    if len(sa) != len(sb):
        longer, gm, name = (sa, gm_a, "a") if len(sa) > len(sb) else (sb, gm_b, "b")
        extra = longer[: abs(len(sa) - len(sb))]
        raise GraphMatchingException(
            f"model {name} has {abs(len(sa) - len(sb))} more layer(s) than the other, "
            f"starting at {_describe(gm, extra[0].base_op_node)}: the models must be a float "
            f"(or prepared) model and the model quantized from it"
        )
    return {b.base_op_node.name: (a, b) for a, b in reversed(pairs)}
