"""Subscript indexing: ``x[idx]`` (getitem) and ``x[idx] = value`` (setitem) with basic and
advanced indices in torch's order, and the index-put Functions their gradients use.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..autograd import grad_mode
from ..autograd.function import Function
from ..backend.meta import check_data_independent
from ..tensor import Tensor


def scatter_add_(xp, out, idx, vals) -> None:
    """out[idx] += vals with repeated indices accumulated (``add.at``, NumPy's and CuPy's).

    Rows picked by one integer array without repeats take ``out[idx] += vals`` instead: NumPy's
    ``add.at`` goes element by element (~23 ns each), so the gradient of Faster R-CNN's pooled
    regions (``result[idx_in_level] = ...``, 1024 x 256 x 7 x 7) took 300 ms a call where the
    fancy-indexed add takes 70 on a loaded machine (issue 23). Each element then gets one
    addition either way, so the result is bitwise the same."""
    if xp is np and out.ndim >= 2:
        i = idx[0] if type(idx) is tuple and len(idx) == 1 else idx
        if type(i) is np.ndarray and i.ndim == 1 and i.dtype.kind in "iu" and i.size > 1:
            s = np.sort(i)
            if s[0] >= 0 and (s[1:] != s[:-1]).all():  # (negative ones may alias others)
                out[i] += vals
                return
    xp.add.at(out, idx, vals)


class _Chain:
    """``x[first][rest]``: an index mixing integers with advanced (array) indices, in torch's
    order. NumPy counts an integer as one more advanced index, so ``x[1, :, i]`` puts the
    broadcast dimension first (shape ``(len(i), n)``); torch selects the integer first and
    indexes the rest (``(n, len(i))``). ``first`` holds the integers (a basic index, a view)."""

    __slots__ = ("first", "rest")

    def __init__(self, first: tuple, rest: tuple) -> None:
        self.first, self.rest = first, rest


def _at(a, idx):
    """``(view, index)`` so that ``view[index]`` is ``a[idx]`` (a chain's integers applied)."""
    return (a[idx.first], idx.rest) if type(idx) is _Chain else (a, idx)


def _get(a, idx):
    a, idx = _at(a, idx)
    return a[idx]


def _is_basic(idx) -> bool:
    if type(idx) is _Chain:
        return False
    items = idx if isinstance(idx, tuple) else (idx,)
    return all(
        i is None
        or i is Ellipsis
        or isinstance(i, (int, slice, np.integer))
        and not isinstance(i, bool)
        for i in items
    )


def _c_contiguous(a) -> bool:
    flags = getattr(a, "flags", None)  # (meta arrays have none: layout is moot there)
    return flags is None or flags.c_contiguous


class GetItem(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x, idx):
        ctx.shape, ctx.idx = x.shape, idx
        out = _get(x, idx)
        if isinstance(out, np.generic):
            # NumPy returns a scalar copy for a full integer index; torch returns a 0-d view
            # (``buf[i].add_(1)`` must update ``buf``). A trailing Ellipsis keeps the view.
            # (A chain, ``t[4, tags[2]]``: an int beside a 0-d index tensor, applies its ints.)
            a, rest = _at(x, idx)
            out = a[(rest if isinstance(rest, tuple) else (rest,)) + (Ellipsis,)]
        elif not _c_contiguous(out) and not _is_basic(idx):
            # torch's advanced indexing returns a fresh contiguous tensor; NumPy's ``x[:, m]``
            # is laid out index-dimension first, and ``.view(-1)`` of it must work (PyG's
            # ``edge_index[:, mask].view(-1)``)
            out = ctx.xp.ascontiguousarray(out)
        return out

    def name(self) -> str:
        # torch's node names the last view op the index applies (``w[0][0:10]``: Slice)
        idx = getattr(self, "idx", Ellipsis)  # (freed with the graph after backward)
        items = idx if isinstance(idx, tuple) else (idx,)
        last = "Slice"
        for i in items:
            if i is None:
                last = "Unsqueeze"
            elif _is_int(i):
                last = "Select"
            elif isinstance(i, slice):
                if i != slice(None):
                    last = "Slice"
            elif i is not Ellipsis:
                return "IndexBackward0"
        return last + "Backward0"

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return IndexPutZeros.apply(grad, ctx.shape, ctx.idx), None
        return _index_put_zeros(ctx.xp, grad, ctx.shape, ctx.idx), None


def _index_put_zeros(xp, grad, shape, idx):
    out = xp.zeros(shape, dtype=grad.dtype)
    view, idx_ = _at(out, idx)
    if _is_basic(idx_):
        view[idx_] = grad
    else:
        scatter_add_(xp, view, idx_, grad)
    return out


class IndexPutZeros(Function):
    """The backward of GetItem as an op of its own, so that it can be differentiated again."""

    @staticmethod
    def forward(ctx, grad, shape, idx):
        ctx.idx = idx
        return _index_put_zeros(ctx.xp, grad, shape, idx)

    @staticmethod
    def backward(ctx, gg):
        return GetItem.apply(gg, ctx.idx) if ctx._tensor_mode else _get(gg, ctx.idx), None, None


class IndexPut(Function):
    """Out-of-place ``x[idx] = v`` (``accumulate`` adds instead), the base of setitem."""

    @staticmethod
    def forward(ctx, x, idx, v, accumulate):
        ctx.idx, ctx.vshape, ctx.accumulate = idx, getattr(v, "shape", ()), accumulate
        out = x.copy()
        view, idx = _at(out, idx)
        if accumulate:
            scatter_add_(ctx.xp, view, idx, v)
        else:
            _assign(view, idx, v)
        return out

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        gx = gv = None
        if ctx.needs_input_grad[0]:
            gx = grad if ctx.accumulate else _zero_at(ctx, grad, ctx.idx)
        if ctx.needs_input_grad[2]:
            gv = GetItem.apply(grad, ctx.idx) if ctx._tensor_mode else _get(grad, ctx.idx)
            if gv.shape != ctx.vshape:  # v was broadcast into the selection
                gv = _sum_to(xp, gv, ctx.vshape)
        return gx, None, gv, None


def _assign(view, idx, v) -> None:
    """``view[idx] = v``, dropping leading size-1 dims of ``v`` as PyTorch does when the
    selection has fewer dims (``R[-1, 0] = torch.tensor([x])``; NumPy refuses a 1-element
    array for a single element)."""
    try:
        view[idx] = v
    except ValueError:
        shape = getattr(v, "shape", ())
        lead = next((i for i, n in enumerate(shape) if n != 1), len(shape))
        if not lead:
            raise
        view[idx] = v.reshape(shape[lead:])


def _zero_at(ctx, grad, idx):
    """``grad`` with the positions ``idx`` set to zero (differentiable in tensor mode)."""
    if ctx._tensor_mode:
        return IndexPut.apply(grad, idx, 0, False)
    out = grad.copy()
    view, idx = _at(out, idx)
    view[idx] = 0
    return out


def _sum_to(xp, g, shape):
    if g.ndim < len(shape):  # v had leading size-1 dims the selection lacks
        g = g.reshape((1,) * (len(shape) - g.ndim) + tuple(g.shape))
    extra = g.ndim - len(shape)
    g = xp.sum(g, axis=tuple(range(extra))) if extra > 0 else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return xp.sum(g, axis=axes, keepdims=True) if axes else g


def _sequence_as_tuple(idx) -> bool:
    """torch's (and old NumPy's) rule: a list shorter than 32 that holds a sequence, tensor,
    slice, ``None`` or ``...`` indexes like the tuple of its items (``mat[[rows, cols]]``, as
    pytorch-metric-learning's HistogramLoss writes), with torch's deprecation warning."""
    if not isinstance(idx, list) or len(idx) >= 32:
        return False
    if any(
        isinstance(i, (list, tuple, range, Tensor, np.ndarray, slice)) or i is None or i is Ellipsis
        for i in idx
    ):
        warnings.warn(
            "Using a non-tuple sequence for multidimensional indexing is deprecated; use "
            "x[tuple(seq)] instead of x[seq]",
            UserWarning,
            stacklevel=4,
        )
        return True
    return False


def _convert_index(idx):
    if _sequence_as_tuple(idx):
        idx = tuple(idx)
    if isinstance(idx, tuple):
        return _torch_order(tuple(_convert_one(i) for i in idx))
    return _convert_one(idx)


def _is_int(i) -> bool:
    return isinstance(i, (int, np.integer)) and not isinstance(i, (bool, np.bool_))


def _torch_order(idx: tuple):
    """Integers beside array indices become a :class:`_Chain` (torch's semantics); any other
    index is NumPy's as it is."""
    if not any(isinstance(i, np.ndarray) for i in idx) or not any(_is_int(i) for i in idx):
        return idx
    first: list = []
    for i in idx:
        if _is_int(i) or i is Ellipsis:
            first.append(i)
        elif isinstance(i, np.ndarray) and i.dtype == np.bool_:
            first.extend([slice(None)] * i.ndim)  # a mask spans its own dimensions
        elif i is not None and not isinstance(i, (bool, np.bool_)):  # None/True add a dim
            first.append(slice(None))
    return _Chain(tuple(first), tuple(i for i in idx if not _is_int(i)))


class _WrapperIndex(Exception):
    """An index is a ``__torch_dispatch__`` wrapper subclass (core/_dispatch.py)."""


def _convert_one(i):
    if isinstance(i, Tensor):
        d = i._data
        if d.dtype.kind not in "biu":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        if type(d) is not np.ndarray and type(d).__name__ == "WrapperData":
            raise _WrapperIndex  # a __torch_dispatch__ subclass as the index: getitem routes it
        return d
    if isinstance(i, list):
        if not i:  # torch: an empty list selects nothing (int64, where NumPy would make float)
            return np.empty(0, np.int64)
        return np.asarray([_convert_one(x) if isinstance(x, Tensor) else x for x in i])
    return i


def getitem(input, idx):
    """``input[idx]``: PyTorch's indexing (ints, slices, None, Ellipsis, bool and integer
    tensors)."""
    try:
        idx = _convert_index(idx)
    except _WrapperIndex:  # x[index_subclass]: aten.index.Tensor goes to the subclass
        from .._dispatch import index_dispatch

        return index_dispatch(GetItem, input, idx)
    check_data_independent("indexing with a boolean mask", input._data, mask=idx)
    try:
        return GetItem.apply(input, idx)
    except IndexError as err:
        raise _index_error(err, input, idx) from None


def _index_error(err: IndexError, input, idx) -> IndexError:
    """NumPy's indexing errors in PyTorch's words (dimension, not axis; mask shapes)."""
    msg = str(err)
    if "is out of bounds for axis" in msg:
        return IndexError(msg.replace("for axis", "for dimension"))
    if msg.startswith("too many indices for array"):
        ndim = input._data.ndim
        first = idx[0] if isinstance(idx, tuple) and idx else idx
        if ndim == 0 and isinstance(first, (int, np.integer)) and not isinstance(first, bool):
            # old programs' `loss.data[0]`: PyTorch's hint at .item() is what the user needs
            return IndexError(
                "invalid index of a 0-dim tensor. Use `tensor.item()` in Python or "
                "`tensor.item<T>()` in C++ to convert a 0-dim tensor to a number"
            )
        if ndim == 0 and isinstance(first, slice):
            return IndexError("slice() cannot be applied to a 0-dim tensor.")
        return IndexError(f"too many indices for tensor of dimension {ndim}")
    mask = idx[0] if isinstance(idx, tuple) and len(idx) == 1 else idx
    if "boolean index did not match" in msg and getattr(mask, "dtype", None) == np.bool_:
        shape = input._data.shape
        at = next((i for i, (m, n) in enumerate(zip(mask.shape, shape)) if m != n), 0)
        return IndexError(
            f"The shape of the mask {list(mask.shape)} at index {at} does not "
            f"match the shape of the indexed tensor {list(shape)} at index {at}"
        )
    return err


def setitem(input, idx, value) -> None:
    """``input[idx] = value``: in place; recorded in the graph when gradients are involved."""
    idx = _convert_index(idx)
    tracking = grad_mode._state.enabled and (
        input.requires_grad or (isinstance(value, Tensor) and value.requires_grad)
    )
    if tracking:
        from .inplace import check_inplace, rebase

        check_inplace(input)
        if isinstance(value, Tensor) and value._data.dtype != input._data.dtype:
            value = value.to(input.dtype)
        try:
            out = IndexPut.apply(input, idx, value, False)
        except (ValueError, IndexError) as err:
            raise _setitem_error(err, input, idx, value) from None
        input._data[...] = out._data
        rebase(input, out)
    else:
        v = value._data if isinstance(value, Tensor) else value
        try:
            view, idx_ = _at(input._data, idx)
            _assign(view, idx_, v)
        except (ValueError, IndexError) as err:
            raise _setitem_error(err, input, idx, value) from None
    input._version_counter[0] += 1


def _setitem_error(err, input, idx, value):
    if isinstance(err, IndexError):
        return _index_error(err, input, idx)
    msg = str(err)
    if isinstance(value, Tensor) and ("could not broadcast" in msg or "with a sequence" in msg):
        from .shape import expand

        try:  # PyTorch reports the value expanded to the selection's shape
            expand(value, _get(input._data, idx).shape)
        except RuntimeError as mismatch:
            return mismatch
    return err
