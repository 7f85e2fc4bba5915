"""Extremum and boolean reductions: max/min (values and indices), amax/amin, argmax/argmin,
all/any and count_nonzero.
"""

from __future__ import annotations

from collections import namedtuple

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import norm_dims, wrap_dim
from .reduction_sum import _dims_kw, _expand_back

# torch.return_types.max / .min (ember.return_types re-exports them)
max_result = namedtuple("max", ["values", "indices"], module="ember.return_types")
min_result = namedtuple("min", ["values", "indices"], module="ember.return_types")


class MaxMin(Function):
    """max/min along one dim with indices (gradient to the selected element)."""

    @staticmethod
    def forward(ctx, x, axis, keepdim, is_max):
        xp = ctx.xp
        idx = (
            xp.argmax(x, axis=axis, keepdims=True)
            if is_max
            else xp.argmin(x, axis=axis, keepdims=True)
        )
        vals = xp.take_along_axis(x, idx, axis=axis)
        idx = idx.astype(xp.int64, copy=False)
        # a one-hot mask of the selected elements: works on cupy and in double backward
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        ctx.save_for_backward(xp.arange(x.shape[axis]).reshape(shape) == idx)
        ctx.axis, ctx.keepdim = axis, keepdim
        if not keepdim:
            vals, idx = vals.squeeze(axis), idx.squeeze(axis)
        ctx.mark_non_differentiable(idx)
        return vals, idx

    @staticmethod
    def backward(ctx, grad, _gidx):
        (mask,) = ctx.saved_tensors
        if not ctx.keepdim:
            grad = ctx.xp.expand_dims(grad, ctx.axis)
        return grad * mask, None, None, None


class AmaxAmin(Function):
    """amax/amin over dims: the gradient is shared evenly among tied extrema (as PyTorch)."""

    @staticmethod
    def forward(ctx, x, axes, keepdim, is_max):
        out = x.max(axis=axes, keepdims=True) if is_max else x.min(axis=axes, keepdims=True)
        ctx.save_for_backward(x, out)
        ctx.axes, ctx.keepdim = axes, keepdim
        return (
            out
            if keepdim
            else out.reshape(
                tuple(n for i, n in enumerate(x.shape) if axes is not None and i not in axes)
            )
        )

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        xp = ctx.xp
        mask = x == out
        count = xp.sum(mask, axis=ctx.axes, keepdims=True)
        g = _expand_back(grad, x.shape, ctx.axes, ctx.keepdim, xp)
        return g * mask / count, None, None, None


# ---- public functions ---------------------------------------------------------------------
def _max_min(input, dim, keepdim, is_max, other=None):
    if isinstance(dim, Tensor):  # max(a, b) is maximum
        from .elementwise import maximum, minimum

        return maximum(input, dim) if is_max else minimum(input, dim)
    if dim is None:
        if input._data.size == 0:
            raise RuntimeError(
                f"{'max' if is_max else 'min'}(): Expected reduction dim to be specified for "
                "input.numel() == 0. Specify the reduction dim with the 'dim' argument."
            )
        return AmaxAmin.apply(input, None, False, is_max)
    axis = wrap_dim(dim, input._data.ndim)
    if input._data.ndim == 0:  # reduce the 1-element view, then back to 0-d
        from .shape import reshape

        v, i = MaxMin.apply(reshape(input, (1,)), 0, False, is_max)
    else:
        v, i = MaxMin.apply(input, axis, keepdim, is_max)
    return (max_result if is_max else min_result)(v, i)


def max(input, dim=None, keepdim=False, **kwargs):
    """The largest element of ``input``; with ``dim``, the largest along it and where it is.

    Called as ``max(input, other)`` with a tensor, it is :func:`maximum`.

    Returns:
        A 0-d tensor, or with ``dim`` a named tuple ``(values, indices)``.
    """
    if kwargs:  # numpy's axis=/keepdims= spellings, as PyTorch accepts
        dim, keepdim = _dims_kw(dim, keepdim, kwargs)
    return _max_min(input, dim, keepdim, True)


def min(input, dim=None, keepdim=False, **kwargs):
    """The smallest element of ``input``; with ``dim``, the smallest along it and where it is.

    Called as ``min(input, other)`` with a tensor, it is :func:`minimum`.

    Returns:
        A 0-d tensor, or with ``dim`` a named tuple ``(values, indices)``.
    """
    if kwargs:
        dim, keepdim = _dims_kw(dim, keepdim, kwargs)
    return _max_min(input, dim, keepdim, False)


def amax(input, dim=(), keepdim=False, **kwargs):
    """The largest values over ``dim`` (all when empty); the gradient is shared evenly among
    equal maxima.
    """
    if kwargs:
        dim, keepdim = _dims_kw(dim, keepdim, kwargs)
    dims = None if dim == () or dim is None else norm_dims(dim, input._data.ndim)
    return AmaxAmin.apply(input, dims, keepdim, True)


def amin(input, dim=(), keepdim=False, **kwargs):
    """The smallest values over ``dim`` (all when empty); the gradient is shared evenly among
    equal minima.
    """
    if kwargs:
        dim, keepdim = _dims_kw(dim, keepdim, kwargs)
    dims = None if dim == () or dim is None else norm_dims(dim, input._data.ndim)
    return AmaxAmin.apply(input, dims, keepdim, False)


def _arg(input, dim, keepdim, fn):
    d = input._data
    xp = _xp(d)
    if dim is None:
        if d.size == 0:
            raise IndexError(
                f"{fn}(): Expected reduction dim to be specified for input.numel() == 0."
            )
        out = getattr(xp, fn)(d.reshape(-1))
        if keepdim:
            out = xp.reshape(out, (1,) * d.ndim)
    else:
        axis = wrap_dim(dim, d.ndim)
        out = getattr(xp, fn)(d, axis=axis, keepdims=keepdim) if d.ndim else xp.zeros((), int)
    return Tensor._wrap(xp.asarray(out, dtype=xp.int64))


def argmax(input, dim=None, keepdim=False, **kwargs):
    """The index of the largest element over ``dim`` (of the flattened input when None); the
    first one among ties.
    """
    if kwargs:
        dim, keepdim = _dims_kw(dim, keepdim, kwargs)
    return _arg(input, dim, keepdim, "argmax")


def argmin(input, dim=None, keepdim=False, **kwargs):
    """The index of the smallest element over ``dim`` (of the flattened input when None); the
    first one among ties.
    """
    if kwargs:
        dim, keepdim = _dims_kw(dim, keepdim, kwargs)
    return _arg(input, dim, keepdim, "argmin")


def _bool_reduce(input, dim, keepdim, fn):
    d = input._data
    xp = _xp(d)
    axes = norm_dims(dim, d.ndim)
    return Tensor._wrap(xp.asarray(getattr(xp, fn)(d, axis=axes, keepdims=keepdim)))


def all(input, dim=None, keepdim=False):
    """Whether every element over ``dim`` is non-zero, a bool tensor.

    Args:
        input (Tensor): the input.
        dim (int or tuple of ints, optional): the dimension(s) to reduce; None reduces all.
        keepdim: keep the reduced dimensions with size 1.
    """
    return _bool_reduce(input, dim, keepdim, "all")


def any(input, dim=None, keepdim=False):
    """Whether any element over ``dim`` is non-zero, a bool tensor.

    Args:
        input (Tensor): the input.
        dim (int or tuple of ints, optional): the dimension(s) to reduce; None reduces all.
        keepdim: keep the reduced dimensions with size 1.
    """
    return _bool_reduce(input, dim, keepdim, "any")


def count_nonzero(input, dim=None):
    """The number of non-zero elements over ``dim`` (all when None), an int64 tensor."""
    d = input._data
    xp = _xp(d)
    return Tensor._wrap(
        xp.asarray(xp.count_nonzero(d, axis=norm_dims(dim, d.ndim)), dtype=xp.int64)
    )


def _xp(d):
    from ..backend.device import get_array_module
    from ..backend.meta import MetaArray, xp

    # meta arrays: the meta namespace, whose asarray keeps them meta (np.asarray would not)
    return xp if type(d) is MetaArray else get_array_module(d)
