"""Elementwise division and rounding: true division, ``rounding_mode``, floor division,
remainder, reciprocal, and the piecewise-constant rounding ops (sign, floor, ceil, trunc, round,
frac) whose gradient is zero.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from ._docs import unary_doc
from ._lowp import LOW_PRECISION, opmath_scalar
from ._util import promote, raise_broadcast_error
from .convert import to_dtype_op
from .elementwise_binary import mul, sub
from .elementwise_unary import _cj, _cplx, _floatify


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a if ctx.needs_input_grad[1] else None, b)
        return a / b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        if _cplx(grad):
            a, b = _cj(a), _cj(b)
        ga = grad / b if na else None
        gb = -grad * a / (b * b) if nb else None
        return ga, gb


class ZeroGrad(Function):
    """Piecewise-constant ops (sign, floor, ceil, round, trunc, frac's integer part)."""

    @staticmethod
    def forward(ctx, x, name, *args):
        return getattr(ctx.xp, name)(x, *args)

    @staticmethod
    def backward(ctx, grad):
        return (grad * 0,) + (None,) * (len(ctx.needs_input_grad) - 1)


class FloorDivide(Function):
    @staticmethod
    def forward(ctx, a, b):
        return ctx.xp.floor_divide(a, b)

    @staticmethod
    def backward(ctx, grad):
        z = grad * 0
        return z, z


# ---- public functions ---------------------------------------------------------------------
def div(input, other, *, rounding_mode=None):
    """``input / other``, elementwise with broadcasting.

    Integer inputs give a floating result unless ``rounding_mode`` is given.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
        rounding_mode: None (true division), ``"trunc"`` (round toward zero) or ``"floor"``
            (round down).
    """
    if (
        rounding_mode is None
        and type(other) is float
        and isinstance(input, Tensor)
        and input._data.dtype in LOW_PRECISION
        and type(input._data) is np.ndarray
    ):
        return Div.apply(input, opmath_scalar(other))  # torch's float32 scalar: _lowp.py
    a, b = promote(input, other)
    if rounding_mode is None:
        a, b = _floatify(a), _floatify(b)
        try:
            return Div.apply(a, b)
        except ValueError as err:
            raise_broadcast_error(err, a, b)
    if rounding_mode == "trunc":
        return _trunc_div(a, b)
    if rounding_mode == "floor":
        return floor_divide(a, b)
    raise RuntimeError(
        f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but "
        f"found '{rounding_mode}'"
    )


def _trunc_div(a, b):
    check_int_divisor(a, b)
    q = div(a, b)
    out = ZeroGrad.apply(q, "trunc")
    t = a if isinstance(a, Tensor) else b
    return out if t._data.dtype.kind in "fV" else to_dtype_op(out, t.dtype)


def check_int_divisor(a, b) -> None:
    """Integer division and modulo by zero raise as PyTorch's CPU kernels do.

    ``a`` and ``b`` are already promoted. Only integer results are checked (floats give inf/nan),
    and only on the CPU: PyTorch's CUDA kernels do not check, and a check there would sync.
    """
    t = a if isinstance(a, Tensor) else b
    if t._data.dtype.kind not in "iu":
        return
    if isinstance(b, Tensor):
        d = b._data
        # count_nonzero: one C pass, no temporary, and no ufunc-reduce overhead (a quarter of
        # ``d.all()``'s cost on 1,000 elements; a tenth of the division's own cost at 1M)
        if isinstance(d, np.ndarray) and np.count_nonzero(d) != d.size:
            raise RuntimeError("ZeroDivisionError")
    elif b == 0 and isinstance(t._data, np.ndarray):
        raise RuntimeError("ZeroDivisionError")


def floor_divide(input, other):
    """``input / other`` rounded down, elementwise (Python's ``//``).

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    a, b = promote(input, other)
    check_int_divisor(a, b)
    try:
        return FloorDivide.apply(a, b)
    except ValueError as err:
        raise_broadcast_error(err, a, b)


def remainder(input, other):
    """The remainder of ``input / other`` with the sign of ``other`` (Python's ``%``); see
    :func:`fmod` for the sign of ``input``.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    # a - floor(a / b) * b: differentiable in a (gradient 1), as PyTorch's fmod/remainder.
    a, b = promote(input, other)
    return sub(a, mul(floor_divide(a, b).detach(), b))


def reciprocal(input):
    """``1 / input``, elementwise; integer inputs give the default floating dtype."""
    return div(1.0, _floatify(input))


def _zero_grad_unary(name, summary: str):
    def op(input):
        if input._data.dtype.kind in "iub" and name != "sign":
            return input.clone()
        return ZeroGrad.apply(input, name)

    op.__name__ = name
    op.__doc__ = unary_doc(summary, floats=False, grad="The gradient is zero everywhere.")
    return op


sign = _zero_grad_unary("sign", "The sign of each element: -1, 0 or 1.")


floor = _zero_grad_unary("floor", "Each element rounded down to an integer value (same dtype).")


ceil = _zero_grad_unary("ceil", "Each element rounded up to an integer value (same dtype).")


trunc = _zero_grad_unary("trunc", "Each element rounded toward zero (same dtype).")


def round(input, *, decimals: int = 0):
    """Round each element to the nearest integer value, halves to even (as NumPy and PyTorch).

    Args:
        input (Tensor): the input; integer tensors are returned unchanged (a copy).
        decimals: the number of decimal places to round to (negative: to the left of the point).

    Returns:
        A tensor of the input's dtype. The gradient is zero everywhere.
    """
    if input._data.dtype.kind in "iub":
        return input.clone()
    return ZeroGrad.apply(input, "round", decimals)


def frac(input):
    """The fractional part ``input - trunc(input)`` of each element, with the sign of ``input``."""
    return sub(input, trunc(input).detach())
