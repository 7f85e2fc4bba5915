"""Mask ops: masked_fill, masked_select, and the indices of non-zero elements (nonzero,
argwhere).
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend.device import get_array_module
from ..backend.meta import check_data_independent
from ..tensor import Tensor
from ._util import cpp_type_name
from .indexing_getitem import IndexPutZeros


class MaskedFill(Function):
    @staticmethod
    def forward(ctx, x, mask, value):
        ctx.save_for_backward(mask)
        return ctx.xp.where(mask, value, x).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        gv = None
        if ctx.needs_input_grad[2]:
            gv = ctx.xp.sum(grad * mask)
        return grad * (mask == 0), None, gv


def masked_fill(input, mask, value):
    """A copy of ``input`` with ``value`` where ``mask`` (a bool tensor, broadcast) is True."""
    if not isinstance(mask, Tensor) or mask._data.dtype.kind != "b":
        got = cpp_type_name(mask) if isinstance(mask, Tensor) else type(mask).__name__
        raise RuntimeError(
            f"masked_fill_ only supports boolean masks, but got mask with dtype {got}"
        )
    if isinstance(value, Tensor) and value._data.ndim != 0:
        raise RuntimeError(
            "masked_fill_ only supports a 0-dimensional value tensor, but got "
            f"tensor with {value._data.ndim} dimension(s)."
        )
    if isinstance(value, Tensor):
        value = value.to(input.dtype)
    return MaskedFill.apply(input, mask, value)


class MaskedSelect(Function):
    @staticmethod
    def forward(ctx, x, mask):
        xp = ctx.xp
        shape = np.broadcast_shapes(x.shape, mask.shape)
        ctx.shape, ctx.mask = shape, xp.broadcast_to(mask, shape)
        return xp.broadcast_to(x, shape)[ctx.mask]

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return IndexPutZeros.apply(grad, ctx.shape, ctx.mask), None
        out = ctx.xp.zeros(ctx.shape, dtype=grad.dtype)
        out[ctx.mask] = grad
        return out, None


def masked_select(input, mask):
    """The elements of ``input`` where ``mask`` (broadcast) is True, as a 1-D tensor."""
    if not isinstance(mask, Tensor) or mask._data.dtype.kind != "b":
        raise RuntimeError("masked_select: expected BoolTensor for mask")
    check_data_independent("masked_select", input._data, mask._data)
    return MaskedSelect.apply(input, mask)


def nonzero(input, *, as_tuple=False):
    """The indices of the non-zero elements of ``input``.

    Returns:
        An int64 tensor of shape ``(n, input.ndim)``, or with ``as_tuple=True`` a tuple of
        ``input.ndim`` 1-D tensors, one per dimension.
    """
    d = input._data
    check_data_independent("nonzero", d)
    xp = get_array_module(d)
    idx = xp.nonzero(d)
    if as_tuple:
        return tuple(Tensor._wrap(i.astype(xp.int64, copy=False)) for i in idx)
    return Tensor._wrap(
        xp.stack(idx, axis=1).astype(xp.int64, copy=False)
        if idx
        else xp.zeros((1 if d.size else 0, 0), dtype=xp.int64)
    )


def nonzero_static(input, *, size: int, fill_value: int = -1):
    """``nonzero(input)`` with a fixed number of rows, ``size``: the first ``size`` indices,
    padded with rows of ``fill_value`` where there are fewer (the export-friendly form, whose
    shape does not depend on the data). Returns an int64 ``(size, input.ndim)`` tensor."""
    if not isinstance(size, int) or size < 0:
        raise RuntimeError(f"nonzero_static: 'size' must be a non-negative int, got {size!r}")
    d = input._data
    xp = get_array_module(d)
    rows = xp.stack(xp.nonzero(d), axis=1) if d.ndim else xp.zeros((0, 0), dtype=xp.int64)
    out = xp.full((size, d.ndim), fill_value, dtype=xp.int64)
    n = min(size, rows.shape[0])
    out[:n] = rows[:n]
    return Tensor._wrap(out)


def argwhere(input):
    """The indices of the non-zero elements, shape ``(n, input.ndim)``; ``nonzero(input)``."""
    return nonzero(input)
