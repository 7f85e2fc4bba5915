"""Elementwise binary arithmetic (add, sub, mul, pow, neg, square) and linear interpolation
(lerp), with broadcasting: one Function per op, forward and backward side by side.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from ._lowp import LOW_PRECISION, opmath_scalar
from ._util import cpp_type_name, deprecated_scalar_first, promote, raise_broadcast_error
from .elementwise_lowp import AddScaledLow, use_fused_low
from .elementwise_unary import _cj, _cplx


class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a + b

    @staticmethod
    def backward(ctx, grad):
        return grad, grad


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        return a - b

    @staticmethod
    def backward(ctx, grad):
        return grad, -grad


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        # save only what the needed gradients use (memory, and fewer in-place conflicts)
        na, nb = ctx.needs_input_grad
        if na or nb:  # (neither: no graph is recorded, nothing to save)
            ctx.save_for_backward(a if nb else None, b if na else None)
        return a * b

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        na, nb = ctx.needs_input_grad
        if _cplx(grad):
            a, b = _cj(a), _cj(b)
        return (grad * b if na else None), (grad * a if nb else None)


def _pow(a, b):
    """``a ** b``, with torch's products for a float32/64 tensor to the scalar power 3 or -2:
    ``x * x * x`` and ``1 / (x * x)``, as torch's CPU kernel computes them (so the bits
    match). libm's ``powf`` takes a slow path for negative bases: ``x ** 3.0`` on 131K float32
    values took 12 ms against 0.03 ms as products (makemore's GELU, ``pow(x, 3.0)``)."""
    if isinstance(b, (int, float)) and not isinstance(b, bool) and b in (3, -2):
        # float16 / bfloat16: torch computes in float32 and rounds once, as ``a ** b`` does
        if getattr(a, "dtype", None) in (np.float32, np.float64):
            sq = a * a
            return sq * a if b == 3 else 1 / sq
    return a**b


class Pow(Function):
    @staticmethod
    def forward(ctx, a, b):
        out = _pow(a, b)
        # the result is needed only for the exponent's gradient: like torch's pow(Tensor,
        # Scalar), ``y = x ** 2; y /= 2`` must not trip the in-place version check
        # (pytorch-metric-learning's LiftedStructureLoss)
        ctx.save_for_backward(a, b, out if ctx.needs_input_grad[1] else None)
        return out

    @staticmethod
    def backward(ctx, grad):
        a, b, out = ctx.saved_tensors
        xp = ctx.xp
        na, nb = ctx.needs_input_grad
        ga = gb = None
        if na:
            # d/da a^b = b a^(b-1); where b == 0 the gradient is 0 even at a == 0
            ga = grad * b * a ** (b - 1) if not isinstance(b, (int, float)) or b != 0 else grad * 0
        if nb:
            # d/db a^b = a^b log a; PyTorch defines it as 0 where a == 0 and b >= 0
            safe = xp.where(a == 0, 1, a) if not isinstance(a, (int, float)) else (a or 1)
            gb = grad * out * xp.log(safe)
        return ga, gb


class Neg(Function):
    @staticmethod
    def forward(ctx, x):
        return -x

    @staticmethod
    def backward(ctx, grad):
        return -grad


def _lerp_low(xp, start, end, weight):
    """float16/bfloat16 lerp as torch's CPU kernel computes it: in float32, ``end - start``
    rounded, then one fused multiply-add (float64 stands in for the fusion), then one rounding
    to the input dtype, which the result keeps."""
    f32, f64 = np.float32, np.float64
    s, e = start.astype(f32), end.astype(f32)
    d = (e - s).astype(f64)
    if isinstance(weight, (int, float)):
        w = f32(weight)
        out = s + w * d if abs(w) < 0.5 else e - d * (f32(1) - w)
    else:
        w = weight.astype(f32)
        out = xp.where(abs(w) < 0.5, s + w.astype(f64) * d, e - d * (1 - w).astype(f64))
    return out.astype(f32).astype(start.dtype)


class Lerp(Function):
    @staticmethod
    def forward(ctx, start, end, weight):
        ctx.save_for_backward(start, end, weight)
        # PyTorch's two-sided formula: from ``end`` when |weight| >= 0.5. It rounds as torch
        # does and keeps infinities: lerp(-inf, x, 0.5) is -inf, not nan (diffusers' KDPM2
        # interpolates log-sigmas that end in log(0))
        if start.dtype in LOW_PRECISION:
            return _lerp_low(ctx.xp, start, end, weight)
        diff = end - start
        if isinstance(weight, (int, float)):
            if start.dtype.kind == "f":  # torch's 1 - weight is taken in the compute dtype
                weight = start.dtype.type(weight)
            return start + weight * diff if abs(weight) < 0.5 else end - diff * (1 - weight)
        return ctx.xp.where(abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))

    @staticmethod
    def backward(ctx, grad):
        start, end, weight = ctx.saved_tensors
        ns, ne, nw = ctx.needs_input_grad
        return (
            grad * (1 - weight) if ns else None,
            grad * weight if ne else None,
            grad * (end - start) if nw else None,
        )


# ---- public functions ---------------------------------------------------------------------
def add(input, other, *args, alpha=1):
    """``input + alpha * other``, elementwise with broadcasting.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
        alpha: the multiplier of ``other``.

    PyTorch's deprecated ``add(input, alpha, other)`` (a number before the tensor) works too,
    with torch's warning.
    """
    if args:
        (other,), alpha = deprecated_scalar_first("add", other, (), args)
    if alpha != 1:
        if use_fused_low(input, other):  # float16/bfloat16: torch's single rounding
            return AddScaledLow.apply(input, other, alpha)
        other = mul(other, alpha)
    a, b = promote(input, other)
    try:
        return Add.apply(a, b)
    except ValueError as err:
        raise_broadcast_error(err, a, b)


def sub(input, other, *args, alpha=1):
    """``input - alpha * other``, elementwise with broadcasting.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
        alpha: the multiplier of ``other``.

    PyTorch's deprecated ``sub(input, alpha, other)`` (a number before the tensor) works too,
    with torch's warning.
    """
    if args:
        (other,), alpha = deprecated_scalar_first("sub", other, (), args)
    if alpha != 1:
        if use_fused_low(input, other):  # float16/bfloat16: torch's single rounding
            return AddScaledLow.apply(input, other, -alpha)
        other = mul(other, alpha)
    a, b = promote(input, other)
    if isinstance(a, Tensor) and a._data.dtype.kind == "b":
        raise RuntimeError(
            "Subtraction, the `-` operator, with two bool tensors is not supported. "
            "Use the `^` or `logical_xor()` operator instead."
        )
    try:
        return Sub.apply(a, b)
    except ValueError as err:
        raise_broadcast_error(err, a, b)


def rsub(input, other, *, alpha=1):
    """``other - alpha * input``, elementwise with broadcasting (:func:`sub` reversed).

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
        alpha: the multiplier of ``input``.
    """
    return sub(other, input, alpha=alpha)


def mul(input, other):
    """``input * other``, elementwise with broadcasting.

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    if (
        type(other) is float
        and isinstance(input, Tensor)
        and input._data.dtype in LOW_PRECISION
        and type(input._data) is np.ndarray
    ):
        return Mul.apply(input, opmath_scalar(other))  # torch's float32 scalar: _lowp.py
    a, b = promote(input, other)
    try:
        return Mul.apply(a, b)
    except ValueError as err:
        raise_broadcast_error(err, a, b)


def pow(input, exponent):
    """``input`` raised to ``exponent``, elementwise with broadcasting.

    Args:
        input (Tensor or Number): the base.
        exponent (Tensor or Number): the exponent.
    """
    a, b = promote(input, exponent)
    if (
        isinstance(a, Tensor)
        and a._data.dtype.kind in "iu"
        and isinstance(b, Tensor) is False
        and isinstance(b, int)
        and b < 0
    ):
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    try:
        return Pow.apply(a, b)
    except ValueError as err:
        raise_broadcast_error(err, a, b)


def neg(input):
    """``-input``, elementwise."""
    return Neg.apply(input)


def lerp(input, end, weight):
    """Linear interpolation ``input + weight * (end - input)``, elementwise with broadcasting.

    Args:
        input (Tensor): the start points.
        end (Tensor): the end points.
        weight (float or Tensor): the interpolation weights; a 0-dim tensor of another dtype
            counts as a scalar, as in PyTorch (``exp_avg.lerp_(grad, 1 - beta1_t)`` with a
            float32 ``beta1_t`` on bfloat16 state: karpathy/autoresearch's fused AdamW).
    """
    if (
        isinstance(weight, Tensor)
        and weight._data.ndim == 0
        and weight._data.dtype != input._data.dtype
    ):
        weight = weight.to(input.dtype)
    for name, t in (("end", end), ("weight", weight)):
        if isinstance(t, Tensor) and t._data.dtype != input._data.dtype:
            raise RuntimeError(
                f"expected dtype {cpp_type_name(input)} for `{name}` but got "
                f"dtype {cpp_type_name(t)}"
            )
    try:
        return Lerp.apply(input, end, weight)
    except ValueError as err:
        raise_broadcast_error(err, input, end, weight)


def square(input):
    """``input * input``, elementwise."""
    return Mul.apply(input, input)
