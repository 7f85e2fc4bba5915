"""Indexing: getitem/setitem (basic, advanced, masks), gather/scatter, index_select/add, masks."""

from __future__ import annotations

import numpy as np

from ..autograd import grad_mode
from ..autograd.function import Function
from ..backend.device import get_array_module
from ..backend.meta import check_data_independent
from ..tensor import Tensor
from ._util import cpp_type_name, scalar_type_name, wrap_dim


def scatter_add_(xp, out, idx, vals) -> None:
    """out[idx] += vals with repeated indices accumulated (``add.at``, NumPy's and CuPy's)."""
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


class GetItem(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x, idx):
        ctx.shape, ctx.idx = x.shape, idx
        out = _get(x, idx)
        if isinstance(out, np.generic):
            # NumPy returns a scalar copy for a full integer index; torch returns a 0-d view
            # (``buf[i].add_(1)`` must update ``buf``). A trailing Ellipsis keeps the view.
            out = x[(idx if isinstance(idx, tuple) else (idx,)) + (Ellipsis,)]
        return out

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
            view[idx] = v
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


def _zero_at(ctx, grad, idx):
    """``grad`` with the positions ``idx`` set to zero (differentiable in tensor mode)."""
    if ctx._tensor_mode:
        return IndexPut.apply(grad, idx, 0, False)
    out = grad.copy()
    view, idx = _at(out, idx)
    view[idx] = 0
    return out


def _sum_to(xp, g, shape):
    extra = g.ndim - len(shape)
    g = xp.sum(g, axis=tuple(range(extra))) if extra > 0 else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return xp.sum(g, axis=axes, keepdims=True) if axes else g


def _convert_index(idx):
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


def _convert_one(i):
    if isinstance(i, Tensor):
        d = i._data
        if d.dtype.kind not in "biu":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
        return d
    if isinstance(i, list):
        return np.asarray([_convert_one(x) if isinstance(x, Tensor) else x for x in i])
    return i


def getitem(input, idx):
    """``input[idx]``: PyTorch's indexing (ints, slices, None, Ellipsis, bool and integer
    tensors)."""
    idx = _convert_index(idx)
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
            view[idx_] = v
        except (ValueError, IndexError) as err:
            raise _setitem_error(err, input, idx, value) from None
    input._version_counter[0] += 1


def _setitem_error(err, input, idx, value):
    if isinstance(err, IndexError):
        return _index_error(err, input, idx)
    if isinstance(value, Tensor) and "could not broadcast" in str(err):
        from .shape import expand

        try:  # PyTorch reports the value expanded to the selection's shape
            expand(value, _get(input._data, idx).shape)
        except RuntimeError as mismatch:
            return mismatch
    return err


def _full_index(xp, index, dim):
    """Index tuple that addresses ``x[..., index[i, j], ...]`` along ``dim`` (gather/scatter)."""
    # an open mesh (NumPy's indices(sparse=True), which CuPy lacks)
    full = [
        xp.arange(n).reshape((1,) * k + (n,) + (1,) * (index.ndim - k - 1))
        for k, n in enumerate(index.shape)
    ]
    full[dim] = index
    return tuple(full)


def _check_index_dtype(index, name: str, suffix: str = "") -> None:
    if not isinstance(index, Tensor) or index._data.dtype.kind not in "iu":
        raise RuntimeError(f"{name}(): Expected dtype int32/int64 for index{suffix}")


def _check_gather(input, dim, index, name):
    _check_index_dtype(index, name)
    # as in PyTorch, a 0-d tensor counts as 1-d here (``zeros(10).scatter_(0, tensor(3), 1)``)
    if max(index._data.ndim, 1) != max(input._data.ndim, 1):
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    return wrap_dim(dim, max(input._data.ndim, 1))


class Gather(Function):
    @staticmethod
    def forward(ctx, x, dim, index):
        full = _full_index(ctx.xp, index, dim)
        ctx.shape, ctx.full = x.shape, full
        return x[full]

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return IndexPutZeros.apply(grad, ctx.shape, ctx.full), None, None
        return _index_put_zeros(ctx.xp, grad, ctx.shape, ctx.full), None, None


def gather(input, dim, index, *, sparse_grad=False):
    """Values of ``input`` picked along ``dim`` by ``index``: ``out[i][j] = input[index[i][j]][j]``
    for ``dim=0`` (and so on for other dimensions).

    Args:
        input (Tensor): the source.
        dim: the dimension to index.
        index (Tensor): int64 indices, with as many dimensions as ``input``.
        sparse_grad: accepted for PyTorch's signature; the gradient is dense.
    """
    dim = _check_gather(input, dim, index, "gather")
    if index._data.ndim == 0 or input._data.ndim == 0:  # 0-d counts as 1-d; keep index's shape
        flat = Gather.apply(input.reshape(-1), 0, index._data.reshape(-1))
        return flat.reshape(index.shape)
    return Gather.apply(input, dim, index._data)


def take_along_dim(input, indices, dim=None):
    """Values of ``input`` picked by ``indices`` along ``dim`` after broadcasting the two (as
    ``numpy.take_along_axis``); ``dim=None`` indexes the flattened input.
    """
    if dim is not None and indices._data.ndim != input._data.ndim:
        raise RuntimeError(
            "ember.take_along_dim(): input and indices should have the same number of "
            f"dimensions, but got {input._data.ndim} dimensions for input, and "
            f"{indices._data.ndim} dimensions for indices"
        )
    if dim is None:
        return gather(input.reshape(-1), 0, indices.reshape(-1))
    d = wrap_dim(dim, input._data.ndim)
    shape = list(
        np.broadcast_shapes(
            input._data.shape[:d] + (1,) + input._data.shape[d + 1 :],
            indices._data.shape[:d] + (1,) + indices._data.shape[d + 1 :],
        )
    )
    shape_x, shape_i = list(shape), list(shape)
    shape_x[d], shape_i[d] = input._data.shape[d], indices._data.shape[d]
    return gather(input.expand(shape_x), d, indices.expand(shape_i))


class Scatter(Function):
    @staticmethod
    def forward(ctx, x, dim, index, src, add):
        full = _full_index(ctx.xp, index, dim)
        ctx.full, ctx.add = full, add
        out = x.copy()
        vals = src if not hasattr(src, "shape") else src[tuple(slice(0, n) for n in index.shape)]
        if add:
            scatter_add_(ctx.xp, out, full, vals)
        else:
            out[full] = vals
        ctx.src_shape = getattr(src, "shape", None)
        ctx.full_shape = index.shape
        return out

    @staticmethod
    def backward(ctx, grad):
        gx = gs = None
        if ctx.needs_input_grad[0]:
            gx = grad if ctx.add else _zero_at(ctx, grad, ctx.full)
        if ctx.needs_input_grad[3]:
            # src may be larger than index: only its leading index-shaped block was used
            block = tuple(slice(0, n) for n in ctx.full_shape)
            if ctx._tensor_mode:
                gs = IndexPutZeros.apply(GetItem.apply(grad, ctx.full), ctx.src_shape, block)
            else:
                gs = ctx.xp.zeros(ctx.src_shape, dtype=grad.dtype)
                gs[block] = grad[ctx.full]
        return gx, None, None, gs, None


def _scatter(input, dim, index, src, add, value=None):
    dim = _check_gather(input, dim, index, "scatter")
    if src is None:
        src = value
    if isinstance(src, Tensor) and src._data.dtype != input._data.dtype:
        raise RuntimeError("scatter(): Expected self.dtype to be equal to src.dtype")
    if index._data.ndim == 0 or input._data.ndim == 0:  # 0-d counts as 1-d
        if isinstance(src, Tensor) and src._data.ndim == 0:
            src = src.reshape(1)
        flat = Scatter.apply(input.reshape(-1), 0, index._data.reshape(-1), src, add)
        return flat.reshape(input.shape)
    return Scatter.apply(input, dim, index._data, src, add)


def scatter(input, dim, index, src=None, value=None, *, reduce=None):
    """A copy of ``input`` with the values of ``src`` (or the scalar ``value``) written at ``index``
    along ``dim``: ``out[index[i][j]][j] = src[i][j]`` for ``dim=0``.

    Args:
        input (Tensor): the tensor to copy.
        dim: the dimension to index.
        index (Tensor): int64 indices.
        src (Tensor): the values to write.
        value (Number): a scalar to write instead of ``src``.
        reduce: ``"add"`` or ``"multiply"`` to combine with the existing values instead of
            replacing them.
    """
    if reduce == "add" and src is not None:
        return scatter_add(input, dim, index, src)
    if reduce is not None:  # value=, 'multiply' (and errors): indexing_ext, via scatter_reduce
        from .indexing_ext import scatter_with_reduce

        return scatter_with_reduce(input, dim, index, src, value, reduce)
    return _scatter(input, dim, index, src, False, value)


def scatter_add(input, dim, index, src):
    """A copy of ``input`` with the values of ``src`` added at ``index`` along ``dim``; repeated
    indices accumulate.
    """
    return _scatter(input, dim, index, src, True)


class IndexSelect(Function):
    @staticmethod
    def forward(ctx, x, axis, index):
        ctx.shape, ctx.axis, ctx.index = x.shape, axis, index
        return ctx.xp.take(x, index, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        full = (slice(None),) * ctx.axis + (ctx.index,)
        if ctx._tensor_mode:
            return IndexPutZeros.apply(grad, ctx.shape, full), None, None
        return _index_put_zeros(ctx.xp, grad, ctx.shape, full), None, None


def index_select(input, dim, index):
    """The entries of ``input`` at the positions ``index`` (a 1-D int tensor) along ``dim``."""
    if not isinstance(index, Tensor) or index._data.dtype.kind not in "iu":
        raise RuntimeError("index_select(): Expected dtype int32 or int64 for index")
    if index._data.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    return IndexSelect.apply(input, wrap_dim(dim, input._data.ndim), index._data.reshape(-1))


class IndexAdd(Function):
    @staticmethod
    def forward(ctx, x, axis, index, src, alpha):
        ctx.axis, ctx.index, ctx.alpha = axis, index, alpha
        out = x.copy()
        scatter_add_(ctx.xp, out, (slice(None),) * axis + (index,), src * alpha)
        return out

    @staticmethod
    def backward(ctx, grad):
        gs = ctx.xp.take(grad, ctx.index, axis=ctx.axis) * ctx.alpha
        return grad, None, None, gs, None


def index_add(input, dim, index, source, *, alpha=1):
    """A copy of ``input`` with ``alpha * source`` added at the positions ``index`` along ``dim``;
    repeated indices accumulate.
    """
    if isinstance(index, Tensor) and index._data.dtype.kind not in "iu":
        raise RuntimeError(
            f"index_add_(): Expected dtype int32/int64 for index but got: {scalar_type_name(index)}"
        )
    return IndexAdd.apply(input, wrap_dim(dim, input._data.ndim), index._data, source, alpha)


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


def argwhere(input):
    """The indices of the non-zero elements, shape ``(n, input.ndim)``; ``nonzero(input)``."""
    return nonzero(input)
