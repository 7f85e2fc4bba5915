"""View ops beyond the basics: diagonals, ``as_strided``, ``Tensor.unfold`` and their scatters.

The views are NumPy/CuPy stride-trick views of the input's memory (writable, sharing the version
counter), so ``x.diagonal().fill_(1)`` or ``x.unfold(0, 2, 1)[0, 0] = 5`` write through as in
PyTorch. Gradients are scatters into zeros; in double backward they are built from ops that are
themselves differentiable (the diagonal pair is mutually inverse, the strided ones use
``IndexPutZeros``).
"""

from __future__ import annotations

import builtins

import numpy as np

from ..autograd import grad_mode
from ..autograd.function import Function
from ..backend.meta import MetaArray
from ..backend.meta import empty as meta_empty
from ..tensor import Tensor
from ._util import wrap_dim
from .function_free import _xp_of  # (meta arrays: the meta namespace)
from .indexing import IndexPut, IndexPutZeros, scatter_add_
from .inplace import check_inplace


def _as_strided(xp, base, shape, strides):
    return xp.lib.stride_tricks.as_strided(base, shape=tuple(shape), strides=tuple(strides))


def _zeros_t(like: Tensor, shape) -> Tensor:
    xp = _xp_of(like._data)
    return Tensor._wrap(xp.zeros(shape, dtype=like._data.dtype))


# ---- diagonals ----------------------------------------------------------------------------
def _diag_view(xp, x, offset: int, d1: int, d2: int):
    """A writable view of ``x``'s diagonal along (d1, d2), as the last dim (PyTorch's layout)."""
    n1, n2 = x.shape[d1], x.shape[d2]
    start = [0] * x.ndim
    if offset >= 0:
        length = builtins.max(builtins.min(n1, n2 - offset), 0)
        start[d2] = offset
    else:
        length = builtins.max(builtins.min(n1 + offset, n2), 0)
        start[d1] = -offset
    base = x[tuple(slice(s, None) for s in start)] if length else x
    keep = [i for i in range(x.ndim) if i not in (d1, d2)]
    shape = [x.shape[i] for i in keep] + [length]
    if type(x) is MetaArray:  # no data to view: a meta array of the shape (writes go nowhere)
        return meta_empty(shape, x.dtype)
    strides = [x.strides[i] for i in keep] + [x.strides[d1] + x.strides[d2]]
    return _as_strided(xp, base, shape, strides)


class Diagonal(Function):
    _view_of = 0

    @staticmethod
    def forward(ctx, x, offset, d1, d2):
        ctx.args = (x.shape, offset, d1, d2)
        return _diag_view(ctx.xp, x, offset, d1, d2)

    @staticmethod
    def backward(ctx, grad):
        shape, offset, d1, d2 = ctx.args
        if ctx._tensor_mode:
            gx = DiagonalScatter.apply(_zeros_t(grad, shape), grad, offset, d1, d2)
            return gx, None, None, None
        out = ctx.xp.zeros(shape, dtype=grad.dtype)
        _diag_view(ctx.xp, out, offset, d1, d2)[...] = grad
        return out, None, None, None


class DiagonalScatter(Function):
    @staticmethod
    def forward(ctx, x, src, offset, d1, d2):
        ctx.args = (offset, d1, d2)
        out = x.copy()
        _diag_view(ctx.xp, out, offset, d1, d2)[...] = src
        return out

    @staticmethod
    def backward(ctx, grad):
        offset, d1, d2 = ctx.args
        nx, ns = ctx.needs_input_grad[:2]
        gx = gs = None
        if ctx._tensor_mode:
            if ns:
                gs = Diagonal.apply(grad, offset, d1, d2)
            if nx:
                dshape = _diag_view(np, np.empty(grad.shape, np.int8), offset, d1, d2).shape
                gx = DiagonalScatter.apply(grad, _zeros_t(grad, dshape), offset, d1, d2)
            return gx, gs, None, None, None
        if ns:
            gs = _diag_view(ctx.xp, grad, offset, d1, d2).copy()
        if nx:
            gx = grad.copy()
            _diag_view(ctx.xp, gx, offset, d1, d2)[...] = 0
        return gx, gs, None, None, None


def _diag_dims(input, dim1, dim2):
    nd = input._data.ndim
    d1, d2 = wrap_dim(dim1, nd), wrap_dim(dim2, nd)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    return d1, d2


def diagonal(input: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1) -> Tensor:
    """The diagonal along ``dim1``/``dim2`` as a view, appended as the last dimension."""
    d1, d2 = _diag_dims(input, dim1, dim2)
    return Diagonal.apply(input, int(offset), d1, d2)


def diagonal_scatter(
    input: Tensor, src: Tensor, offset: int = 0, dim1: int = 0, dim2: int = 1
) -> Tensor:
    """A copy of ``input`` with ``src`` written onto its diagonal."""
    d1, d2 = _diag_dims(input, dim1, dim2)
    want = _diag_view(np, np.empty(input._data.shape, np.int8), int(offset), d1, d2).shape
    if tuple(src._data.shape) != want:
        raise RuntimeError(
            f"diagonal_scatter(): expected src to have a size equal to the slice "
            f"of self. src size = {list(src._data.shape)}, slice size = "
            f"{list(want)}"
        )
    if src._data.dtype != input._data.dtype:
        src = src.to(input.dtype)
    return DiagonalScatter.apply(input, src, int(offset), d1, d2)


def diag_embed(input: Tensor, offset: int = 0, dim1: int = -2, dim2: int = -1) -> Tensor:
    """Batched diagonal matrices whose diagonals (along ``dim1``/``dim2``) are ``input``'s last
    dimension."""
    nd = input._data.ndim + 1
    d1, d2 = wrap_dim(dim1, nd), wrap_dim(dim2, nd)
    if d1 == d2:
        raise RuntimeError(f"diagonal dimensions cannot be identical {dim1}, {dim2}")
    n = input._data.shape[-1] + builtins.abs(int(offset)) if input._data.ndim else 1
    batch = list(input._data.shape[:-1])
    shape = [0] * nd
    rest = iter(batch)
    for i in range(nd):
        shape[i] = n if i in (d1, d2) else next(rest)
    return DiagonalScatter.apply(_zeros_t(input, tuple(shape)), input, int(offset), d1, d2)


def diag(input: Tensor, diagonal: int = 0) -> Tensor:
    """A 1-D input becomes a diagonal matrix; a 2-D input gives its diagonal (a copy)."""
    nd = input._data.ndim
    if nd == 1:
        return diag_embed(input, diagonal, 0, 1)
    if nd == 2:
        return Diagonal.apply(input, int(diagonal), 0, 1).clone()
    raise RuntimeError("diag(): Supports 1D or 2D tensors. Got " + f"{nd}D")


def diagflat(input: Tensor, offset: int = 0) -> Tensor:
    """A 2-D tensor with the flattened ``input`` on diagonal ``offset`` and zeros elsewhere."""
    return diag_embed(input.reshape(-1), offset, 0, 1)


def fill_diagonal_(input: Tensor, fill_value, wrap: bool = False) -> Tensor:
    """Fill the main diagonal in place (all dims equal, or a tall 2-D matrix; ``wrap`` restarts
    the diagonal every ``cols + 1`` rows, as NumPy's ``fill_diagonal`` does)."""
    shape = input._data.shape
    nd = len(shape)
    if nd < 2:
        raise RuntimeError("dimensions must larger than 1")
    if nd > 2 and len(set(shape)) != 1:
        raise RuntimeError("all dimensions of input must be of equal length")
    xp = _xp_of(input._data)
    n = builtins.min(shape)
    if nd == 2 and wrap and shape[0] > shape[1] + 1:
        flat = xp.arange(0, shape[0] * shape[1], shape[1] + 1)
        idx = (flat // shape[1], flat % shape[1])
    else:
        idx = (xp.arange(n),) * nd
    input.__setitem__(tuple(Tensor._wrap(i) for i in idx), fill_value)
    return input


# ---- strided views ------------------------------------------------------------------------
class StridedView(Function):
    """A view ``make(xp, x)`` built by stride tricks; the gradient scatters back by index."""

    _view_of = 0

    @staticmethod
    def forward(ctx, x, make):
        ctx.shape, ctx.make = x.shape, make
        return make(ctx.xp, x)

    @staticmethod
    def backward(ctx, grad):
        shape = ctx.shape
        n = int(np.prod(shape, dtype=np.int64))
        xp = _xp_of(grad._data) if ctx._tensor_mode else ctx.xp
        idx = ctx.make(xp, xp.arange(n).reshape(shape))
        if ctx._tensor_mode:
            return IndexPutZeros.apply(grad, (n,), (idx,)).reshape(shape), None
        out = xp.zeros(n, dtype=grad.dtype)
        scatter_add_(xp, out, (idx,), grad)
        return out.reshape(shape), None


def overlap_add(xp, g, step: int, n: int):
    """The sum of the windows ``g[..., t, :]`` (shape ``(..., frames, size)``) placed at
    ``t * step`` in a zero array of length ``n`` (the adjoint of ``unfold(-1, size, step)``):
    ``ceil(size / step)`` slice adds."""
    frames, size = g.shape[-2:]
    lead = g.shape[:-2]
    span = frames * step
    out = xp.zeros(lead + (max(n, (frames - 1) * step + size) + step,), dtype=g.dtype)
    for q in range(-(-size // step)):
        w = min(step, size - q * step)
        blk = g[..., q * step : q * step + w]
        if w < step:  # the last group (or windows shorter than the step): zeros after them
            blk = xp.concatenate([blk, xp.zeros(lead + (frames, step - w), g.dtype)], axis=-1)
        out[..., q * step : q * step + span] += blk.reshape(lead + (span,))
    return out[..., :n]


class UnfoldView(StridedView):
    """``unfold``'s view. Its gradient is the overlap-add of the windows (NumPy's ``add.at``
    over every element was most of an STFT's backward)."""

    @staticmethod
    def forward(ctx, x, make, dim, size, step):
        ctx.dim, ctx.size, ctx.step = dim, size, step
        return StridedView.forward(ctx, x, make)

    @staticmethod
    def backward(ctx, grad):
        shape, d, size, step = ctx.shape, ctx.dim, ctx.size, ctx.step
        if ctx._tensor_mode or not shape or size > 64 * step:
            return (*StridedView.backward(ctx, grad), None, None, None)
        xp = ctx.xp
        out = overlap_add(xp, xp.moveaxis(grad, d, -2), step, shape[d])
        return xp.ascontiguousarray(xp.moveaxis(out, -1, d)), None, None, None, None


def _strided_maker(size, stride, offset):
    def make(xp, a):
        flat = a.reshape(-1)  # a view for contiguous inputs (torch's storage), else a copy
        return _as_strided(
            xp,
            flat[offset:] if offset < flat.size else flat[:0],
            size,
            [s * flat.itemsize for s in stride],
        )

    return make


def _check_strided(input, size, stride, offset):
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError("mismatch in length of strides and shape")
    if builtins.any(s < 0 for s in stride):
        raise RuntimeError(
            "as_strided: Negative strides are not supported at the moment, got "
            f"strides: {list(stride)}"
        )
    offset = 0 if offset is None else int(offset)
    need = 0 if 0 in size else offset + builtins.sum((n - 1) * s for n, s in zip(size, stride)) + 1
    have = input._data.size
    if need > have:
        isz = input._data.itemsize
        raise RuntimeError(
            f"setStorage: sizes {list(size)}, strides {list(stride)}, storage "
            f"offset {offset}, and itemsize {isz} requiring a storage size of "
            f"{need * isz} are out of bounds for storage of size {have * isz}"
        )
    return size, stride, offset


def as_strided(input: Tensor, size, stride, storage_offset: int | None = None) -> Tensor:
    """A view with the given sizes and element strides over the input's (contiguous) storage.

    For a contiguous input this is PyTorch's view of its storage; for other inputs it views a
    contiguous copy (NumPy arrays have no separate storage to address).
    """
    size, stride, offset = _check_strided(input, size, stride, storage_offset)
    return StridedView.apply(input, _strided_maker(size, stride, offset))


def as_strided_scatter(
    input: Tensor, src: Tensor, size, stride, storage_offset: int | None = None
) -> Tensor:
    """A copy of ``input`` with ``src`` written where ``as_strided(size, stride)`` looks."""
    size, stride, offset = _check_strided(input, size, stride, storage_offset)
    shape = input._data.shape
    xp = _xp_of(input._data)
    n = int(np.prod(shape, dtype=np.int64))
    idx = _strided_maker(size, stride, offset)(xp, xp.arange(n))
    if tuple(src._data.shape) != size:
        raise RuntimeError(
            f"expected src to have a size equal to the slice of self. src size = "
            f"{list(src._data.shape)}, slice size = {list(size)}"
        )
    out = IndexPut.apply(input.reshape(-1), (idx,), src.to(input.dtype), False)
    return out.reshape(shape)


def unfold(input: Tensor, dimension: int, size: int, step: int) -> Tensor:
    """``Tensor.unfold``: every ``size``-long window along ``dimension`` (every ``step``), as a
    new last dimension; a view."""
    nd = input._data.ndim
    d = wrap_dim(dimension, nd) if nd else 0
    n = input._data.shape[d] if nd else 1
    if size > n:
        raise RuntimeError(f"maximum size for tensor at dimension {d} is {n} but size is {size}")
    if step <= 0:
        raise RuntimeError(f"step is {step} but must be > 0")

    def make(xp, a):
        if a.ndim == 0:
            return a.reshape(1)
        shape, strides = list(a.shape), list(a.strides)
        shape[d] = (n - size) // step + 1
        strides[d] = a.strides[d] * step
        return _as_strided(xp, a, shape + [size], strides + [a.strides[d]])

    if not nd:
        return StridedView.apply(input, make)
    return UnfoldView.apply(input, make, d, size, step)


# ---- in-place view ops (they change the tensor's shape, not its values) -------------------
def _inplace_view(fn, name: str):
    from .._numpy_names import with_numpy_names

    fn = with_numpy_names(fn, name[:-1])  # (``x.unsqueeze_(axis=0)``, as torch's parser)

    def method(self, *args, **kwargs):
        if grad_mode._state.enabled and self.requires_grad:
            check_inplace(self)
        out = fn(self, *args, **kwargs)
        self._data = out._data
        if out.requires_grad:
            self.grad_fn, self._output_nr, self.requires_grad = out.grad_fn, out._output_nr, True
        return self

    method.__name__ = name
    return method


def as_strided_(input: Tensor, size, stride, storage_offset: int | None = None) -> Tensor:
    """Give ``input`` the shape ``size`` with strides ``stride`` (in elements) in place, reading
    its data from ``storage_offset``.
    """
    return _inplace_view(as_strided, "as_strided_")(input, size, stride, storage_offset)
