"""Indexing along one dimension with an index tensor: gather/take_along_dim, scatter/scatter_add,
index_select and index_add.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import scalar_type_name, wrap_dim
from .indexing_getitem import GetItem, IndexPutZeros, _index_put_zeros, _zero_at, scatter_add_


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
