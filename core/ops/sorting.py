"""Sorting and selection: sort, argsort, msort, topk, kthvalue, median, nanmedian, mode.

The order of elements is found on raw arrays (no gradient: indices are integers); the values
are then gathered from the input with ``Gather``, whose backward scatters the gradient back to
the selected elements (and is itself differentiable, which gives double backward).

NaN sorts as the largest value, as in PyTorch; ties keep their original order (stable).
"""

from __future__ import annotations

import numpy as np

from .. import return_types
from ..autograd.function import Function
from ..backend.device import get_array_module
from ..backend.meta import MetaArray
from ..tensor import Tensor
from ._util import wrap_dim
from .indexing import Gather
from .shape import reshape


def argsort_raw(xp, d, axis: int, descending: bool = False):
    """Stable argsort of a raw array along ``axis`` (NaN last ascending, first descending)."""
    kind = {"kind": "stable"} if xp is np else {}  # CuPy's sort is always stable
    if not descending:
        return xp.argsort(d, axis=axis, **kind)
    # a stable descending order: sort the reversed array, reverse back, map the positions
    idx = xp.flip(xp.argsort(xp.flip(d, axis), axis=axis, **kind), axis)
    return (d.shape[axis] - 1) - idx


def _take(xp, a, start: int, stop: int, axis: int):
    """``a[..., start:stop, ...]`` along ``axis``."""
    return a[(slice(None),) * axis + (slice(start, stop),)]


def _vector(input: Tensor, dim: int):
    """The tensor and its axis; a 0-d tensor acts as a 1-element vector (dim 0 or -1)."""
    axis = wrap_dim(dim, input._data.ndim)
    if input._data.ndim == 0:
        return reshape(input, (1,)), 0, True
    return input, axis, False


def _finish(values: Tensor, indices: Tensor, axis: int, keepdim: bool, scalar: bool):
    """Drop the reduced axis (unless ``keepdim``) and restore 0-d results of 0-d inputs."""
    if scalar:
        return reshape(values, ()), reshape(indices, ())
    if not keepdim:
        shape = values._data.shape[:axis] + values._data.shape[axis + 1 :]
        values, indices = reshape(values, shape), reshape(indices, shape)
    return values, indices


def _gather(input: Tensor, axis: int, idx) -> Tensor:
    idx = idx.astype(get_array_module(idx).int64, copy=False)
    return Gather.apply(input, axis, idx)


def _index_tensor(idx) -> Tensor:
    # contiguous, as torch's: topk's indices are a slice of an argsort, and callers ``.view``
    # them (ultralytics' RT-DETR head: ``x.topk(k, dim=1)[1].view(-1)``)
    xp = get_array_module(idx)
    out = idx.astype(xp.int64, copy=False)
    if not isinstance(out, MetaArray) and not out.flags.c_contiguous:  # (meta: no data)
        out = xp.ascontiguousarray(out)
    return Tensor._wrap(out)


# ---- sort ---------------------------------------------------------------------------------
def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False):
    """Sorts ``input`` along ``dim``; returns ``(values, indices)``. The sort is always stable
    (``stable=True`` only makes the promise explicit)."""
    x, axis, scalar = _vector(input, dim)
    d = x._data
    order = argsort_raw(get_array_module(d), d, axis, bool(descending))
    values, indices = _gather(x, axis, order), _index_tensor(order)
    if scalar:
        values, indices = reshape(values, ()), reshape(indices, ())
    return return_types.sort(values, indices)


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    """The indices that sort ``input`` along ``dim`` (stable)."""
    d = input._data
    axis = wrap_dim(dim, d.ndim)
    if d.ndim == 0:
        return Tensor._wrap(get_array_module(d).zeros((), dtype=np.int64))
    return _index_tensor(argsort_raw(get_array_module(d), d, axis, bool(descending)))


def msort(input: Tensor) -> Tensor:
    """``sort(input, dim=0).values``."""
    return sort(input, 0).values


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """The ``k`` largest (``largest=False``: smallest) elements along ``dim``, in order."""
    x, axis, scalar = _vector(input, dim)
    d = x._data
    if not 0 <= k <= d.shape[axis]:
        raise RuntimeError("selected index k out of range")
    xp = get_array_module(d)
    order = _take(xp, argsort_raw(xp, d, axis, bool(largest)), 0, k, axis)
    values, indices = _finish(_gather(x, axis, order), _index_tensor(order), axis, True, scalar)
    return return_types.topk(values, indices)


def kthvalue(input: Tensor, k: int, dim: int = -1, keepdim: bool = False):
    """The ``k``-th smallest element along ``dim`` (1-based) and its index."""
    x, axis, scalar = _vector(input, dim)
    d = x._data
    if not 1 <= k <= d.shape[axis]:
        raise RuntimeError(
            f"kthvalue(): selected number k out of range for dimension {wrap_dim(dim, d.ndim)}"
        )
    xp = get_array_module(d)
    idx = _take(xp, argsort_raw(xp, d, axis), k - 1, k, axis)
    values, indices = _finish(_gather(x, axis, idx), _index_tensor(idx), axis, keepdim, scalar)
    return return_types.kthvalue(values, indices)


# ---- median -------------------------------------------------------------------------------
def _median_positions(xp, d, axis, ignore_nan: bool):
    """Sorted position of the lower median of each slice. NaNs sort last: ``median`` picks the
    first NaN of a slice that has one; ``nanmedian`` the lower median of the others."""
    n = d.shape[axis]
    if d.dtype.kind not in "fc":
        return xp.full(d.shape[:axis] + (1,) + d.shape[axis + 1 :], (n - 1) // 2, np.int64)
    valid = n - xp.isnan(d).sum(axis=axis, keepdims=True)
    if ignore_nan:
        return xp.where(valid > 0, (valid - 1) // 2, 0)
    return xp.where(valid < n, valid, (n - 1) // 2)


class MedianAll(Function):
    """The median of all elements; the gradient is shared evenly among the elements equal to it
    (all NaNs when it is NaN), as PyTorch's."""

    @staticmethod
    def forward(ctx, x, ignore_nan):
        xp = ctx.xp
        flat = x.reshape(-1)
        if flat.size == 0:
            return xp.asarray(xp.nan, dtype=x.dtype)
        order = argsort_raw(xp, flat, 0)
        pos = _median_positions(xp, flat, 0, ignore_nan)
        out = flat[order[pos]].reshape(())
        mask = (x == out) | (xp.isnan(x) & xp.isnan(out)) if x.dtype.kind in "fc" else x == out
        share = mask.astype(x.dtype)
        share /= share.sum()
        ctx.save_for_backward(share)
        return out

    @staticmethod
    def backward(ctx, grad):
        (share,) = ctx.saved_tensors
        return grad * share, None


def _median(input: Tensor, dim, keepdim: bool, ignore_nan: bool, name: str):
    if dim is None:
        return MedianAll.apply(input, ignore_nan)
    x, axis, scalar = _vector(input, dim)
    d = x._data
    if d.shape[axis] == 0:
        raise IndexError(f"{name}(): Expected reduction dim {axis} to have non-zero size.")
    xp = get_array_module(d)
    order = argsort_raw(xp, d, axis)
    idx = xp.take_along_axis(order, _median_positions(xp, d, axis, ignore_nan), axis)
    values, indices = _finish(_gather(x, axis, idx), _index_tensor(idx), axis, keepdim, scalar)
    return getattr(return_types, name)(values, indices)


def median(input: Tensor, dim: int | None = None, keepdim: bool = False):
    """The lower median of all elements, or ``(values, indices)`` along ``dim``. A slice that
    holds a NaN has median NaN."""
    return _median(input, dim, keepdim, False, "median")


def nanmedian(input: Tensor, dim: int | None = None, keepdim: bool = False):
    """``median`` ignoring NaNs (NaN only where a slice is all NaN)."""
    return _median(input, dim, keepdim, True, "nanmedian")


# ---- mode ---------------------------------------------------------------------------------
def mode(input: Tensor, dim: int = -1, keepdim: bool = False):
    """The most frequent value along ``dim`` (the smallest among equally frequent ones) and the
    index of its last occurrence."""
    x, axis, scalar = _vector(input, dim)
    d = x._data
    n = d.shape[axis]
    if n == 0:
        raise IndexError(f"mode(): Expected reduction dim {axis} to have non-zero size.")
    xp = get_array_module(d)
    # runs of equal values in each sorted row (rows are the slices along ``axis``)
    rows = xp.moveaxis(d, axis, -1).reshape(-1, n)
    order = argsort_raw(xp, rows, 1)
    s = xp.take_along_axis(rows, order, 1)
    start = xp.ones(s.shape, dtype=bool)
    start[:, 1:] = s[:, 1:] != s[:, :-1]
    end = xp.ones(s.shape, dtype=bool)
    end[:, :-1] = start[:, 1:]
    starts, ends = xp.nonzero(start.reshape(-1))[0], xp.nonzero(end.reshape(-1))[0]
    lengths = xp.zeros(s.size, dtype=np.int64)
    lengths[starts] = ends - starts + 1
    lengths = lengths.reshape(s.shape)
    # the longest run; argmax keeps the first, i.e. the smallest value
    first = xp.argmax(lengths, axis=1)[:, None]
    last = first + xp.take_along_axis(lengths, first, 1) - 1
    idx = xp.take_along_axis(order, last, 1)  # stable sort: the run's last original index
    shape = d.shape[:axis] + d.shape[axis + 1 :] + (1,)
    idx = xp.moveaxis(idx.reshape(shape), -1, axis)
    values, indices = _finish(_gather(x, axis, idx), _index_tensor(idx), axis, keepdim, scalar)
    return return_types.mode(values, indices)
