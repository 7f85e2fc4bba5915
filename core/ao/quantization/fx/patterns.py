"""Which graph nodes FX graph mode quantizes, and how (ember's slice of torch's x86 / fbgemm /
qnnpack backend config).

* weighted: Linear / Conv1d / Conv2d, their fused (``nn.intrinsic``) and QAT forms, and the
  Hardswish / LeakyReLU / Dropout modules: input and output observed, converted to the
  quantized module of the static quant mapping.
* binary: ``+`` / ``ember.add`` / ``*`` / ``ember.mul`` of two tensors (with a following relu
  fused in): inputs and output observed, converted to ``quantized_ops.add`` etc.
* cat: ``ember.cat`` of tensors: inputs and output share one observer.
* share: ops that commute with quantization (relu, max / average pooling, flatten, view ...):
  their output reuses their input's observer, so they run on the codes.

Everything else stays float; ``convert_fx`` dequantizes before it.
"""

from __future__ import annotations

import operator

from .... import nn
from ....nn import functional as F
from ...nn import intrinsic as nni
from ...nn import qat as nnqat
from ...nn.intrinsic import qat as nniqat

__all__ = [
    "WEIGHTED_MODULES",
    "OWN_OBSERVER_MODULES",
    "SHARE_MODULES",
    "SHARE_FUNCTIONS",
    "SHARE_METHODS",
    "RELU_FUNCTIONS",
    "METHOD_FUNCTIONS",
    "ADD_FUNCTIONS",
    "MUL_FUNCTIONS",
    "CAT_FUNCTIONS",
    "node_kind",
    "is_relu",
]


def _ember():
    import ember

    return ember


WEIGHTED_MODULES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nni.LinearReLU,
    nni.ConvReLU1d,
    nni.ConvReLU2d,
    nnqat.Linear,
    nnqat.Conv1d,
    nnqat.Conv2d,
    nniqat.LinearReLU,
    nniqat.ConvReLU1d,
    nniqat.ConvReLU2d,
    nniqat.ConvBn1d,
    nniqat.ConvBn2d,
    nniqat.ConvBnReLU1d,
    nniqat.ConvBnReLU2d,
)
# modules with their own output observer that convert swaps through the static mapping like
# the weighted ones (torch's "different observer as input" activations)
OWN_OBSERVER_MODULES = (nn.Hardswish, nn.LeakyReLU, nn.Dropout)
# (torch's backend config leaves nn.Flatten out of this list: it gets a dequantize before it
# and a quantize after it)
SHARE_MODULES = (
    nn.ReLU,
    nn.ReLU6,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AvgPool2d,
    nn.Identity,
)
SHARE_METHODS = frozenset(
    {
        "relu",
        "flatten",
        "view",
        "reshape",
        "permute",
        "transpose",
        "squeeze",
        "unsqueeze",
        "contiguous",
    }
)


def _fns(*names_in_ember, functional=()):
    e = _ember()
    out = {getattr(e, n) for n in names_in_ember if hasattr(e, n)}
    out |= {getattr(F, n) for n in functional if hasattr(F, n)}
    return frozenset(out)


RELU_FUNCTIONS = _fns("relu", functional=("relu",))
# ember.X functions that read a QTensor's codes as values: convert_fx calls the QTensor method
# of the same name instead
METHOD_FUNCTIONS = {
    getattr(_ember(), n): n
    for n in ("relu", "flatten", "reshape", "squeeze", "unsqueeze", "transpose", "permute")
}
SHARE_FUNCTIONS = (
    RELU_FUNCTIONS
    | frozenset(METHOD_FUNCTIONS)
    | _fns(functional=("max_pool1d", "max_pool2d", "adaptive_avg_pool2d", "avg_pool2d"))
)
ADD_FUNCTIONS = frozenset({operator.add, operator.iadd}) | _fns("add")
MUL_FUNCTIONS = frozenset({operator.mul, operator.imul}) | _fns("mul")
CAT_FUNCTIONS = _fns("cat", "concat", "concatenate")


def is_relu(node, modules) -> bool:
    """A relu node: ``nn.ReLU`` module, ``F.relu`` / ``ember.relu`` or ``x.relu()``."""
    if node.op == "call_module":
        return type(modules.get(node.target)) is nn.ReLU
    if node.op == "call_function":
        return node.target in RELU_FUNCTIONS
    return node.op == "call_method" and node.target == "relu"


def _two_tensors(node) -> bool:
    from ....fx import Node

    return len(node.args) == 2 and not node.kwargs and all(isinstance(a, Node) for a in node.args)


def node_kind(node, modules) -> str | None:
    """'weighted' | 'add' | 'mul' | 'cat' | 'share' | None (stays float)."""
    if node.op == "call_module":
        mod = modules.get(node.target)
        if isinstance(mod, WEIGHTED_MODULES) or type(mod) in OWN_OBSERVER_MODULES:
            return "weighted"
        if type(mod) in SHARE_MODULES:
            return "share"
        return None
    if node.op == "call_method":
        return "share" if node.target in SHARE_METHODS else None
    if node.op != "call_function":
        return None
    t = node.target
    if t in ADD_FUNCTIONS and _two_tensors(node):
        return "add"
    if t in MUL_FUNCTIONS and _two_tensors(node):
        return "mul"
    if t in CAT_FUNCTIONS and node.args and isinstance(node.args[0], (list, tuple)):
        from ....fx import Node

        return "cat" if all(isinstance(a, Node) for a in node.args[0]) else None
    if t in SHARE_FUNCTIONS:
        return "share"
    return None
