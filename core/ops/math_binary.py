"""Two-argument float math: atan2, logaddexp/logaddexp2, hypot, copysign, fmod, fmax/fmin,
nextafter, heaviside. One Function per op, forward and backward side by side on raw arrays;
re-exported by ``math_ops``.
"""

from __future__ import annotations

import math

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import promote, raise_broadcast_error, scalar_type_name
from .elementwise import _floatify, check_int_divisor

_LN2 = math.log(2.0)  # (math_ops has its own, for exp2/log2)


# ---- binary --------------------------------------------------------------------------------
class Atan2(Function):
    @staticmethod
    def forward(ctx, y, x):
        ctx.save_for_backward(y, x)
        return ctx.xp.arctan2(y, x)

    @staticmethod
    def backward(ctx, grad):
        y, x = ctx.saved_tensors
        r2 = x * x + y * y
        return grad * x / r2, grad * -y / r2


class Logaddexp(Function):
    @staticmethod
    def forward(ctx, a, b, base2):
        out = (ctx.xp.logaddexp2 if base2 else ctx.xp.logaddexp)(a, b)
        ctx.save_for_backward(a, b, out)
        ctx.scale = _LN2 if base2 else 1.0
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        exp, s = ctx.xp.exp, ctx.scale
        return grad * exp((a - out) * s), grad * exp((b - out) * s), None


class Hypot(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = ctx.xp.hypot(a, b)
        ctx.save_for_backward(a, b, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        return grad * a / out, grad * b / out


class Copysign(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = ctx.xp.copysign(a, b)
        xp = ctx.xp
        # d out / d a is +-1: the ratio of signs, and 0 at a == 0 (as torch)
        ctx.save_for_backward(
            xp.where(a == 0, 0, xp.copysign(1, a) * xp.copysign(1, b)).astype(out.dtype)
        )
        return out

    @staticmethod
    def backward(ctx, grad):
        (ratio,) = ctx.saved_tensors
        return grad * ratio, grad * 0


class Fmod(Function):
    @staticmethod
    def forward(ctx, a, b):
        xp = ctx.xp
        if ctx.needs_input_grad[1]:
            ctx.save_for_backward(xp.trunc(a / b))
        return xp.fmod(a, b)

    @staticmethod
    def backward(ctx, grad):
        gb = -grad * ctx.saved_tensors[0] if ctx.needs_input_grad[1] else None
        return grad, gb


class FMaxMin(Function):
    """fmax/fmin: NaN-ignoring maximum/minimum; ties send the gradient to ``input``."""

    @staticmethod
    def forward(ctx, a, b, is_max):
        xp = ctx.xp
        pick_a = ((a >= b) if is_max else (a <= b)) | xp.isnan(b)
        ctx.save_for_backward(pick_a)
        return (xp.fmax if is_max else xp.fmin)(a, b)

    @staticmethod
    def backward(ctx, grad):
        (pick_a,) = ctx.saved_tensors
        return grad * pick_a, grad - grad * pick_a, None


class Nextafter(Function):
    @staticmethod
    def forward(ctx, a, b):
        return ctx.xp.nextafter(a, b)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad * 0


class Heaviside(Function):
    @staticmethod
    def forward(ctx, x, values):
        xp = ctx.xp
        return xp.where(x == 0, values, (x > 0).astype(x.dtype))

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError("derivative for aten::heaviside is not implemented")


def _binary(cls, input, other, *extra, name=None, floats=True, ints_ok=True):
    a, b = promote(input, other)
    if not ints_ok:
        t = a if isinstance(a, Tensor) else b
        if t._data.dtype.kind not in "fcV":
            raise RuntimeError(f"\"{name}_cpu\" not implemented for '{scalar_type_name(t)}'")
    if floats:
        a, b = _floatify(a), _floatify(b)
    try:
        return cls.apply(a, b, *extra)
    except ValueError as err:
        raise_broadcast_error(err, a, b)


def atan2(input: Tensor, other: Tensor) -> Tensor:
    """The angle atan(input / other) in (-pi, pi], by the signs of both (the quadrant).

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    return _binary(Atan2, input, other)


def logaddexp(input: Tensor, other: Tensor) -> Tensor:
    """ln(e^input + e^other) elementwise, computed stably.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    return _binary(Logaddexp, input, other, False, name="logaddexp", ints_ok=False)


def logaddexp2(input: Tensor, other: Tensor) -> Tensor:
    """log2(2^input + 2^other) elementwise, computed stably.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    return _binary(Logaddexp, input, other, True, name="logaddexp2", ints_ok=False)


def hypot(input: Tensor, other: Tensor) -> Tensor:
    """sqrt(input^2 + other^2) elementwise, without overflow in the squares.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    return _binary(Hypot, input, other, name="hypot", ints_ok=False)


def copysign(input: Tensor, other) -> Tensor:
    """The magnitude of ``input`` with the sign of ``other``, elementwise.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    return _binary(Copysign, input, other)


def fmod(input: Tensor, other) -> Tensor:
    """The remainder of ``input / other`` with the sign of ``input`` (C's ``fmod``); see
    :func:`remainder` for the sign of ``other``.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    a, b = promote(input, other)
    check_int_divisor(a, b)
    return _binary(Fmod, a, b, floats=False)


def fmax(input: Tensor, other: Tensor) -> Tensor:
    """The larger of ``input`` and ``other`` elementwise, ignoring NaN where only one is NaN.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    return _binary(FMaxMin, input, other, True, floats=False)


def fmin(input: Tensor, other: Tensor) -> Tensor:
    """The smaller of ``input`` and ``other`` elementwise, ignoring NaN where only one is NaN.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    return _binary(FMaxMin, input, other, False, floats=False)


def nextafter(input: Tensor, other: Tensor) -> Tensor:
    """The next floating-point value after ``input`` in the direction of ``other``.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    return _binary(Nextafter, input, other, name="nextafter", ints_ok=False)


def heaviside(input: Tensor, values: Tensor) -> Tensor:
    """The Heaviside step: 0 where ``input < 0``, 1 where ``input > 0`` and ``values`` where
    ``input == 0``. No gradient (PyTorch has none either).
    """
    if isinstance(values, Tensor) and values._data.dtype != input._data.dtype:
        raise RuntimeError("heaviside is not yet implemented for tensors with different dtypes.")
    try:
        return Heaviside.apply(input, values)
    except ValueError as err:
        raise_broadcast_error(err, input, values)
