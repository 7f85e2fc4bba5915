"""Activation functions."""

from __future__ import annotations

import math

import numpy as np

from . import OnnxExporterError
from ._context import Sym, _np_of
from ._ops_basic import _c, _clamp, _np_dtype, dtype_of, rank, typed
from ._registry import fn


# ---- activations -------------------------------------------------------------------------
@fn("relu6")
def _relu6(ctx, x, inplace=False):
    return _clamp(ctx, x, 0.0, 6.0)


@fn("hardtanh")
def _hardtanh(ctx, x, min_val=-1.0, max_val=1.0, inplace=False):
    return _clamp(ctx, x, min_val, max_val)


@fn("leaky_relu")
def _leaky_relu(ctx, x, negative_slope=0.01, inplace=False):
    return ctx.op("LeakyRelu", [x], alpha=float(negative_slope))


@fn("rrelu")
def _rrelu(ctx, x, lower=1.0 / 8, upper=1.0 / 3, training=False, inplace=False):
    if training:
        raise OnnxExporterError("rrelu in training mode is random and cannot be exported")
    return ctx.op("LeakyRelu", [x], alpha=float(lower + upper) / 2)


@fn("elu")
def _elu(ctx, x, alpha=1.0, inplace=False):
    return ctx.op("Elu", [x], alpha=float(alpha))


@fn("celu")
def _celu(ctx, x, alpha=1.0, inplace=False):
    return ctx.op("Celu", [x], alpha=float(alpha))


@fn("selu")
def _selu(ctx, x, inplace=False):
    return ctx.op("Selu", [x], alpha=1.6732632423543772, gamma=1.0507009873554805)


@fn("gelu")
def _gelu(ctx, x, approximate="none"):
    half = _c(ctx, 0.5, x)
    if approximate == "tanh":
        x3 = ctx.op("Mul", [ctx.op("Mul", [x, x]), x])
        inner = ctx.op("Add", [x, ctx.op("Mul", [x3, _c(ctx, 0.044715, x)])])
        t = ctx.op("Tanh", [ctx.op("Mul", [inner, _c(ctx, math.sqrt(2 / math.pi), x)])])
    else:
        t = ctx.op("Erf", [ctx.op("Mul", [x, _c(ctx, 1 / math.sqrt(2), x)])])
    return ctx.op("Mul", [ctx.op("Mul", [x, half]), ctx.op("Add", [t, _c(ctx, 1.0, x)])])


@fn("silu")
def _silu(ctx, x, inplace=False):
    return ctx.op("Mul", [x, ctx.op("Sigmoid", [x])])


@fn("softplus")
def _softplus(ctx, x, beta=1.0, threshold=20.0):
    if beta == 1:
        sp = ctx.op("Softplus", [x])
        bx = x
    else:
        bx = ctx.op("Mul", [x, _c(ctx, beta, x)])
        sp = ctx.op("Div", [ctx.op("Softplus", [bx]), _c(ctx, beta, x)])
    # torch returns x itself where beta * x > threshold
    return ctx.op(
        "Where", [ctx.op("Greater", [typed(ctx, bx, dtype_of(x)), _c(ctx, threshold, x)]), x, sp]
    )


@fn("mish")
def _mish(ctx, x, inplace=False):
    return ctx.op("Mul", [x, ctx.op("Tanh", [ctx.op("Softplus", [x])])])


@fn("hardsigmoid")
def _hardsigmoid(ctx, x, inplace=False):
    return ctx.op("HardSigmoid", [x], alpha=1.0 / 6, beta=0.5)


@fn("hardswish")
def _hardswish(ctx, x, inplace=False):
    return ctx.op("HardSwish", [x])


@fn("tanhshrink")
def _tanhshrink(ctx, x):
    return ctx.op("Sub", [x, ctx.op("Tanh", [x])])


@fn("softshrink")
def _softshrink(ctx, x, lambd=0.5):
    return ctx.op("Shrink", [x], lambd=float(lambd), bias=float(lambd))


@fn("hardshrink")
def _hardshrink(ctx, x, lambd=0.5):
    return ctx.op("Shrink", [x], lambd=float(lambd), bias=0.0)


@fn("threshold")
def _threshold(ctx, x, threshold, value, inplace=False):
    return ctx.op("Where", [ctx.op("Greater", [x, _c(ctx, threshold, x)]), x, _c(ctx, value, x)])


@fn("logsigmoid")
def _logsigmoid(ctx, x):
    return ctx.op("Neg", [ctx.op("Softplus", [ctx.op("Neg", [x])])])


@fn("prelu")
def _prelu(ctx, x, weight):
    w = _np_of(weight) if not isinstance(weight, Sym) else None
    r = rank(x)
    if w is not None and r >= 2 and w.size > 1:
        w = w.reshape((-1,) + (1,) * (r - 2))
        return ctx.op("PRelu", [x, ctx.const(w)])
    return ctx.op("PRelu", [x, weight if w is None else ctx.const(w.reshape(-1))])


@fn("glu")
def _glu(ctx, x, dim=-1):
    a, b = (
        ctx.op("Split", [x], n_out=2, axis=int(dim))
        if ctx.opset < 18
        else ctx.op("Split", [x], n_out=2, axis=int(dim), num_outputs=2)
    )
    return ctx.op("Mul", [a, ctx.op("Sigmoid", [b])])


def _softmax_dim(x, dim):
    if dim is None:  # torch's legacy implicit dim
        return 0 if rank(x) in (0, 1, 3) else 1
    return int(dim)


@fn("softmax")
def _softmax(ctx, x, dim=None, _stacklevel=3, dtype=None):
    if dtype is not None:
        x = Sym(ctx.cast(x.name, np.dtype(_np_dtype(dtype))), x.ex)
    return ctx.op("Softmax", [x], axis=_softmax_dim(x, dim))


@fn("log_softmax")
def _log_softmax(ctx, x, dim=None, _stacklevel=3, dtype=None):
    return ctx.op("LogSoftmax", [x], axis=_softmax_dim(x, dim))


@fn("softmin")
def _softmin(ctx, x, dim=None, _stacklevel=3, dtype=None):
    neg = Sym(ctx.op("Neg", [x]), x.ex)  # a Sym: its rank matters below opset 13
    return ctx.op("Softmax", [neg], axis=_softmax_dim(x, dim))
