"""Elementwise selection: maximum/minimum (gradient split at ties), clamp, and where."""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import promote, raise_broadcast_error, scalar_type_name


class Maximum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.maximum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        # ties split the gradient evenly, as PyTorch does
        wa = (a > b) + (a == b) * 0.5
        return grad * wa, grad * (1 - wa)


class Minimum(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return ctx.xp.minimum(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        wa = (a < b) + (a == b) * 0.5
        return grad * wa, grad * (1 - wa)


class Where(Function):
    @staticmethod
    def forward(ctx, cond, a, b):
        ctx.save_for_backward(cond)
        return ctx.xp.where(cond, a, b)

    @staticmethod
    def backward(ctx, grad):
        (cond,) = ctx.saved_tensors
        zero = grad * 0
        return None, ctx.xp.where(cond, grad, zero), ctx.xp.where(cond, zero, grad)


class Clamp(Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return ctx.xp.clip(x, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        mask = True
        if ctx.lo is not None:
            mask = x >= ctx.lo
        if ctx.hi is not None:
            mask = mask * (x <= ctx.hi)
        return grad * mask, None, None


# ---- public functions ---------------------------------------------------------------------
def maximum(input, other):
    """The larger of ``input`` and ``other`` elementwise; NaN if either is NaN (see :func:`fmax`).

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    a, b = promote(input, other)
    try:
        return Maximum.apply(a, b)
    except ValueError as err:
        raise_broadcast_error(err, a, b)


def minimum(input, other):
    """The smaller of ``input`` and ``other`` elementwise; NaN if either is NaN (see :func:`fmin`).

    Args:
        input (Tensor or Number): the first operand.
        other (Tensor or Number): the second operand, broadcast against ``input``.
    """
    a, b = promote(input, other)
    try:
        return Minimum.apply(a, b)
    except ValueError as err:
        raise_broadcast_error(err, a, b)


def where(condition, input=None, other=None):
    """Elements of ``input`` where ``condition`` is True and of ``other`` elsewhere, with
    broadcasting. ``where(condition)`` alone is ``nonzero(condition, as_tuple=True)``.

    Args:
        condition (Tensor): a bool tensor.
        input (Tensor or Number): the values where ``condition`` holds.
        other (Tensor or Number): the values elsewhere.
    """
    if input is None and other is None:
        from .indexing import nonzero

        return nonzero(condition, as_tuple=True)
    if not isinstance(input, (Tensor, np.ndarray)) and not isinstance(other, (Tensor, np.ndarray)):
        input, other = _scalar_pair_as_tensors(input, other, condition)
    a, b = promote(input, other)
    if not isinstance(condition, Tensor) or condition._data.dtype.kind != "b":
        got = scalar_type_name(condition) if isinstance(condition, Tensor) else "a non-tensor"
        raise RuntimeError(
            f"where expected condition to be a boolean tensor, but got a tensor with dtype {got}"
        )
    try:
        return Where.apply(condition, a, b)
    except ValueError as err:
        raise_broadcast_error(err, condition, a, b)


def _scalar_pair_as_tensors(input, other, condition):
    """``where(cond, 1, 0)``: two Python scalars become 0-d tensors of the dtype PyTorch gives
    the pair (bool, int64, the default float or its complex) on ``condition``'s device."""
    from ..backend.dtype import promote_types, scalar_dtype
    from ..creation import tensor as _tensor

    for v in (input, other):
        if not isinstance(v, (bool, int, float, complex, np.generic)):
            raise TypeError(
                "where(): expected input and other to be tensors or numbers, got "
                f"{type(v).__name__}"
            )
    input, other = (v.item() if isinstance(v, np.generic) else v for v in (input, other))
    dt = promote_types(scalar_dtype(input), scalar_dtype(other))
    dev = condition.device if isinstance(condition, Tensor) else None
    return _tensor(input, dtype=dt, device=dev), _tensor(other, dtype=dt, device=dev)


def clamp(input, min=None, max=None):
    """Each element limited to ``[min, max]``.

    Args:
        input (Tensor): the input.
        min (Number or Tensor, optional): the lower bound.
        max (Number or Tensor, optional): the upper bound; where it is below ``min``, the result
            is ``max``.

    Raises:
        RuntimeError: both bounds are None.
    """
    if min is None and max is None:
        raise RuntimeError("ember.clamp: At least one of 'min' or 'max' must not be None")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = input
        if min is not None:
            out = maximum(out, min)
        if max is not None:
            out = minimum(out, max)
        return out
    if isinstance(input, Tensor) and input._data.dtype.kind in "biu" and not input.is_quantized:
        # ``int_tensor.clamp(min=1e-5)`` is a default-float tensor in PyTorch (x-transformers'
        # masked mean divides by it); NumPy's clip would give float64
        for bound in (min, max):
            if bound is not None:
                input, _ = promote(input, bound)
    return Clamp.apply(input, min, max)
