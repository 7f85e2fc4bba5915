"""Elementwise math beyond elementwise.py: trigonometric and hyperbolic functions, exp2/log2/
log10, nan_to_num. The two-argument float functions (atan2, hypot, logaddexp, copysign, fmod,
fmax, ...) live in ``math_binary`` and are re-exported here.

One Function per op, forward and backward side by side on raw arrays (``ctx.xp``). A backward
needing a function that ember's tensor namespace lacks (cosh, sinh) takes it from :func:`_xf`,
which returns ember's own differentiable op during double backward.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from ._docs import unary_doc
from ._util import promote, raise_broadcast_error, scalar_type_name  # noqa: F401
from .elementwise import _floatify, check_int_divisor  # noqa: F401
from .math_binary import (  # noqa: F401  (re-exported: every name stays importable here)
    Atan2,
    Copysign,
    FMaxMin,
    Fmod,
    Heaviside,
    Hypot,
    Logaddexp,
    Nextafter,
    _binary,
    atan2,
    copysign,
    fmax,
    fmin,
    fmod,
    heaviside,
    hypot,
    logaddexp,
    logaddexp2,
    nextafter,
)

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)


def _xf(xp, name: str):
    """``xp.<name>`` on raw arrays; this module's differentiable op on tensors."""
    if xp is np or getattr(xp, "__name__", "") == "cupy":
        return getattr(xp, name)
    return globals()[name]


# ---- unary ---------------------------------------------------------------------------------
class Tan(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.xp.tan(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (1 + out * out)


class Asin(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.arcsin(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / ctx.xp.sqrt(1 - x * x)


class Acos(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.arccos(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return -grad / ctx.xp.sqrt(1 - x * x)


class Atan(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.arctan(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1 + x * x)


class Sinh(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.sinh(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _xf(ctx.xp, "cosh")(x)


class Cosh(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.cosh(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _xf(ctx.xp, "sinh")(x)


class Asinh(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.arcsinh(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / ctx.xp.sqrt(x * x + 1)


class Acosh(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.arccosh(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (ctx.xp.sqrt(x - 1) * ctx.xp.sqrt(x + 1))


class Atanh(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.arctanh(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (1 - x * x)


class Exp2(Function):
    @staticmethod
    def forward(ctx, x):
        out = ctx.xp.exp2(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * out * _LN2


class Log2(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log2(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (x * _LN2)


class Log10(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return ctx.xp.log10(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (x * _LN10)


class MaskGrad(Function):
    """An op whose gradient is ``grad`` where a mask (computed in forward) holds, else 0:
    nan_to_num (finite elements pass their gradient)."""

    @staticmethod
    def forward(ctx, x, nan, posinf, neginf):
        ctx.save_for_backward(ctx.xp.isfinite(x))
        return ctx.xp.nan_to_num(x, nan=nan, posinf=posinf, neginf=neginf)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None, None, None


# ---- public functions ---------------------------------------------------------------------
def _unary(cls, name, summary: str):
    def op(input: Tensor) -> Tensor:
        return cls.apply(_floatify(input))

    op.__name__ = name
    op.__doc__ = unary_doc(summary)
    return op


tan = _unary(Tan, "tan", "The tangent of each element (radians).")
asin = arcsin = _unary(Asin, "asin", "The inverse sine of each element, in [-pi/2, pi/2].")
acos = arccos = _unary(Acos, "acos", "The inverse cosine of each element, in [0, pi].")
atan = arctan = _unary(Atan, "atan", "The inverse tangent of each element, in (-pi/2, pi/2).")
sinh = _unary(Sinh, "sinh", "The hyperbolic sine of each element.")
cosh = _unary(Cosh, "cosh", "The hyperbolic cosine of each element.")
asinh = arcsinh = _unary(Asinh, "asinh", "The inverse hyperbolic sine of each element.")
acosh = arccosh = _unary(
    Acosh, "acosh", "The inverse hyperbolic cosine of each element (NaN below 1)."
)
atanh = arctanh = _unary(Atanh, "atanh", "The inverse hyperbolic tangent of each element.")
exp2 = _unary(Exp2, "exp2", "2 to the power of each element.")
log2 = _unary(Log2, "log2", "The base-2 logarithm of each element.")
log10 = _unary(Log10, "log10", "The base-10 logarithm of each element.")


def nan_to_num(
    input: Tensor, nan: float = 0.0, posinf: float | None = None, neginf: float | None = None
) -> Tensor:
    """A copy of ``input`` with NaN, positive infinity and negative infinity replaced.

    Args:
        input (Tensor): the input; integer tensors are returned as a copy.
        nan: the value for NaN.
        posinf: the value for +inf (default: the dtype's largest finite value).
        neginf: the value for -inf (default: the dtype's lowest finite value).
    """
    if input._data.dtype.kind not in "fcV":
        return input.clone()
    return MaskGrad.apply(input, nan, posinf, neginf)


arctan2 = atan2
