"""Indexing beyond getitem/gather/scatter: scatter_reduce, index_put/copy/fill/reduce, put/take,
masked_scatter, unravel_index.

Most are compositions of ``IndexPut`` / ``GetItem`` (indexing.py), whose gradients (and double
backward) already exist. ``scatter_reduce`` is one Function whose backward follows PyTorch's
formulas, written with ember ops so that it is differentiable again.
"""

from __future__ import annotations

import builtins

import numpy as np

from ..autograd.function import Function
from ..backend.device import get_array_module
from ..backend.meta import is_meta
from ..tensor import Tensor
from ._util import scalar_type_name, wrap_dim
from .elementwise import where
from .indexing import GetItem, IndexPut, _full_index, gather, scatter_add_
from .inplace import make_inplace

_REDUCES = ("sum", "prod", "mean", "amax", "amin")


def _at(xp, ufunc: str, out, idx, vals) -> None:
    """``ufunc.at`` (unbuffered, repeated indices combine); CuPy lacks some, e.g. multiply."""
    fn = getattr(xp, ufunc)
    if hasattr(fn, "at"):
        try:
            fn.at(out, idx, vals)
            return
        except (NotImplementedError, TypeError):
            if xp is np:
                raise
    host = out.get()  # pragma: no cover - GPU without the ufunc's ``at``
    getattr(np, ufunc).at(
        host,
        tuple(i.get() if hasattr(i, "get") else i for i in idx),
        vals.get() if hasattr(vals, "get") else vals,
    )
    out[...] = xp.asarray(host)


def _extreme(dtype, lowest: bool):
    if dtype.kind in "fc":
        return -np.inf if lowest else np.inf
    if dtype.kind == "b":
        return not lowest
    info = np.iinfo(dtype)
    return info.min if lowest else info.max


class ScatterReduce(Function):
    @staticmethod
    def forward(ctx, x, src, dim, index, reduce, include_self):
        xp = ctx.xp
        full = _full_index(xp, index, dim)
        out = x.copy()
        count = None
        if reduce in ("sum", "mean"):
            if not include_self:
                out[full] = 0
            scatter_add_(xp, out, full, src)
            if reduce == "mean":
                count = (
                    xp.ones(x.shape, dtype=np.int64)
                    if include_self
                    else xp.zeros(x.shape, dtype=np.int64)
                )
                scatter_add_(xp, count, full, 1)
                safe = xp.maximum(count, 1)
                mean = out // safe if out.dtype.kind in "iub" else out / safe
                out = xp.where(count > 0, mean, x).astype(x.dtype, copy=False)
        else:
            ufunc = {"prod": "multiply", "amax": "maximum", "amin": "minimum"}[reduce]
            if not include_self:
                out[full] = 1 if reduce == "prod" else _extreme(x.dtype, reduce == "amax")
            _at(xp, ufunc, out, full, src)
        ctx.args = (dim, index, reduce, include_self, count)
        if reduce in ("prod", "amax", "amin"):
            ctx.save_for_backward(x, src, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        dim, index, reduce, include_self, count = ctx.args
        tm = ctx._tensor_mode
        wrap = (lambda a: a) if tm else Tensor._wrap
        g = wrap(grad)
        idx = Tensor._wrap(index if not tm else _same_device(index, grad))
        gx = gs = None
        if reduce in ("sum", "mean"):
            if reduce == "mean":
                n = count if not tm else _same_device(count, grad)
                g = g / Tensor._wrap(get_array_module(n).maximum(n, 1).astype(g._data.dtype))
            gx = g if include_self else g.scatter(dim, idx, 0.0)
            gs = gather(g, dim, idx)
        else:
            x, src, out = (wrap(a) for a in ctx.saved_tensors)
            gx, gs = (_prod_grads if reduce == "prod" else _extreme_grads)(
                g, x, src, out, dim, idx, include_self
            )
        if not tm:
            gx, gs = gx._data, gs._data
        nx, ns = ctx.needs_input_grad[:2]
        return (gx if nx else None), (gs if ns else None), None, None, None, None


def _same_device(a, like):
    xp = get_array_module(like._data)
    return a if isinstance(a, xp.ndarray) else xp.asarray(a)


def _extreme_grads(g, x, src, out, dim, idx, include_self):
    # the gradient is shared evenly among the elements (self and src) equal to the result
    dt = g.dtype
    self_is = (x == out).to(dt)
    if not include_self:
        self_is = self_is.scatter(dim, idx, 0.0)
    src_is = (src == gather(out, dim, idx)).to(dt)
    share = g / self_is.scatter_add(dim, idx, src_is)
    return self_is * share, src_is * gather(share, dim, idx)


def _prod_grads(g, x, src, out, dim, idx, include_self):
    # PyTorch's formula: products of the other factors, exact where one factor is zero
    dt = g.dtype
    masked_self = x.masked_fill(x == 0, 1.0)
    masked_result = scatter_reduce(masked_self, dim, idx, src, "prod", include_self=include_self)
    gx = g * masked_result / masked_self
    if not include_self:
        gx = gx.scatter(dim, idx, 0.0)
    src_zero = src == 0
    zeros = Tensor._wrap(get_array_module(x._data).zeros(x._data.shape, dtype=x._data.dtype))
    zeros_in = zeros.scatter_add(dim, idx, src_zero.to(dt))
    single = src_zero & (gather(zeros_in, dim, idx) == 1)
    masked_src = src.masked_fill(single, 1.0)
    masked_src_result = scatter_reduce(x, dim, idx, masked_src, "prod", include_self=include_self)
    gs = where(
        single,
        gather(g * masked_src_result, dim, idx),
        gather(g * out, dim, idx) / src.masked_fill(src_zero, 1.0),
    )
    return gx, gs


def scatter_reduce(
    input: Tensor, dim: int, index: Tensor, src: Tensor, reduce: str, *, include_self: bool = True
) -> Tensor:
    """Reduce ``src`` into a copy of ``input`` at ``index`` along ``dim`` (sum, prod, mean, amax,
    amin); ``include_self=False`` leaves ``input``'s own values out of the reduction."""
    reduce = {"max": "amax", "min": "amin"}.get(reduce, reduce)  # torch's hidden aliases
    if reduce not in _REDUCES:
        raise RuntimeError(
            f"reduce argument must be either sum, prod, mean, amax or amin, got {reduce}"
        )
    if not isinstance(index, Tensor) or index._data.dtype.kind not in "iu":
        raise RuntimeError("scatter_reduce(): Expected dtype int64 for index")
    nd = input._data.ndim
    d = wrap_dim(dim, nd)
    if index._data.ndim != builtins.max(nd, 1) and not (nd == 0 and index._data.ndim == 0):
        raise RuntimeError("Index tensor must have the same number of dimensions as self tensor")
    if src._data.dtype != input._data.dtype:
        raise RuntimeError("scatter_reduce(): Expected self.dtype to be equal to src.dtype")
    if src._data.shape != index._data.shape:  # only the leading index-shaped block is used
        src = GetItem.apply(src, tuple(slice(0, n) for n in index._data.shape))
    return ScatterReduce.apply(input, src, d, index._data, reduce, bool(include_self))


def scatter_with_reduce(input, dim, index, src, value, reduce):
    """``scatter(..., reduce='add'|'multiply')`` (PyTorch's deprecated form)."""
    if reduce not in ("add", "multiply"):
        raise RuntimeError(f"reduce argument must be either add or multiply. Got {reduce}")
    if src is None:
        src = Tensor._wrap(
            get_array_module(input._data).full(index._data.shape, value, dtype=input._data.dtype)
        )
    return scatter_reduce(input, dim, index, src, "sum" if reduce == "add" else "prod")


def _dim_index(input, dim, index, name):
    if not isinstance(index, Tensor) or index._data.dtype.kind not in "iu":
        raise RuntimeError(
            f"{name}(): Expected a long tensor for index, but got "
            f"{scalar_type_name(index) if isinstance(index, Tensor) else index}"
        )
    if index._data.ndim > 1:
        raise IndexError(f"{name}(): Index is supposed to be a vector")
    d = wrap_dim(dim, input._data.ndim)
    return d, (slice(None),) * d + (index._data.reshape(-1),)


def index_copy(input: Tensor, dim: int, index: Tensor, source: Tensor) -> Tensor:
    """A copy of ``input`` with ``source``'s slices along ``dim`` written at ``index``."""
    d, idx = _dim_index(input, dim, index, "index_copy")
    if source._data.dtype != input._data.dtype:
        raise RuntimeError(
            f"index_copy_(): self and source expected to have the same dtype, "
            f"but got (self) {scalar_type_name(input)} and (source) "
            f"{scalar_type_name(source)}"
        )
    if input._data.ndim == 0:
        return IndexPut.apply(input, (), source.reshape(()), False)
    return IndexPut.apply(input, idx, source, False)


def index_fill(input: Tensor, dim: int, index: Tensor, value) -> Tensor:
    """A copy of ``input`` with the slices at ``index`` along ``dim`` set to ``value``."""
    d, idx = _dim_index(input, dim, index, "index_fill")
    if isinstance(value, Tensor):
        if value._data.ndim:
            raise RuntimeError(
                "index_fill_ only supports a 0-dimensional value tensor, but got "
                f"tensor with {value._data.ndim} dimension(s)."
            )
        value = value.to(input.dtype)
    if input._data.ndim == 0:
        idx = ()
    return IndexPut.apply(input, idx, value, False)


def index_reduce(
    input: Tensor,
    dim: int,
    index: Tensor,
    source: Tensor,
    reduce: str,
    *,
    include_self: bool = True,
) -> Tensor:
    """Reduce ``source``'s slices into ``input``'s slices at ``index`` (prod, mean, amax, amin)."""
    if reduce not in ("prod", "mean", "amax", "amin"):
        raise RuntimeError(
            f"index_reduce(): Expected reduce to be one of prod, mean, amax or "
            f"amin but got {reduce}."
        )
    d, _ = _dim_index(input, dim, index, "index_reduce")
    idx = index._data.reshape(-1)
    shape = source._data.shape
    if source._data.ndim and shape[d] != idx.shape[0]:
        raise RuntimeError("index_reduce_(): Number of indices should be equal to source.size(dim)")
    xp = get_array_module(idx)
    view = [1] * len(shape)
    if view:
        view[d] = -1
    full = xp.broadcast_to(idx.reshape(view), shape) if view else idx.reshape(())
    return scatter_reduce(
        input,
        d,
        Tensor._wrap(xp.ascontiguousarray(full)),
        source,
        reduce,
        include_self=include_self,
    )


def _index_tuple(indices):
    out = []
    for i in indices:
        if i is None:
            out.append(slice(None))
        elif isinstance(i, Tensor):
            if i._data.dtype.kind not in "biu":
                raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
            out.append(i._data)
        else:
            out.append(np.asarray(i))
    return tuple(out)


def index_put(input: Tensor, indices, values: Tensor, accumulate: bool = False) -> Tensor:
    """``input[indices] = values`` (or ``+=`` with ``accumulate``) on a copy."""
    if isinstance(values, Tensor) and values._data.dtype != input._data.dtype:
        raise RuntimeError(
            f"Index put requires the source and destination dtypes match, got "
            f"{scalar_type_name(input)} for the destination and "
            f"{scalar_type_name(values)} for the source."
        )
    return IndexPut.apply(input, _index_tuple(indices), values, bool(accumulate))


def put(input: Tensor, index: Tensor, source: Tensor, accumulate: bool = False) -> Tensor:
    """Write ``source`` at the flat positions ``index`` of a copy of ``input``."""
    if index._data.size != source._data.size:
        raise RuntimeError(
            f"put_(): Expected source and index to have the same number of "
            f"elements, but got source.numel() = {source._data.size}, "
            f"index.numel() = {index._data.size}"
        )
    if source._data.dtype != input._data.dtype:
        raise RuntimeError(
            f"put_(): self and source expected to have the same dtype, but got "
            f"self.dtype = {scalar_type_name(input)} and source.dtype = "
            f"{scalar_type_name(source)}"
        )
    _check_flat(input, index)
    out = IndexPut.apply(
        input.reshape(-1), (index._data.reshape(-1),), source.reshape(-1), bool(accumulate)
    )
    return out.reshape(input._data.shape)


def _check_flat(input, index):
    n = input._data.size
    d = index._data
    if d.size and (int(d.max()) >= n or int(d.min()) < -n):
        bad = int(d.max()) if int(d.max()) >= n else int(d.min())
        raise IndexError(f"out of range: tried to access index {bad} on a tensor of {n} elements.")


def take(input: Tensor, index: Tensor) -> Tensor:
    """The elements of ``input`` (as if flattened) at ``index``; the result has index's shape."""
    if not isinstance(index, Tensor) or index._data.dtype.kind not in "iu":
        raise RuntimeError(
            "take(): Expected a long tensor for index, but got "
            f"{scalar_type_name(index) if isinstance(index, Tensor) else index}"
        )
    _check_flat(input, index)
    return GetItem.apply(input.reshape(-1), (index._data,))


def masked_scatter(input: Tensor, mask: Tensor, source: Tensor) -> Tensor:
    """A copy of ``input`` with ``source``'s leading elements written where ``mask`` is True."""
    if not isinstance(mask, Tensor) or mask._data.dtype.kind != "b":
        raise RuntimeError(
            "masked_scatter_ only supports boolean masks, but got mask with "
            f"dtype {mask.dtype if isinstance(mask, Tensor) else type(mask)}"
        )
    if source._data.dtype != input._data.dtype:
        raise RuntimeError(
            f"masked_scatter_: expected self and source to have same dtypes but "
            f"got {scalar_type_name(input)} and {scalar_type_name(source)}"
        )
    xp = get_array_module(input._data)
    shape = np.broadcast_shapes(input._data.shape, mask._data.shape)
    if shape != input._data.shape:
        input = input.expand(shape)
    # (a copy, not ascontiguousarray, which makes a 0-d mask 1-d)
    m = xp.broadcast_to(mask._data, shape).copy()
    # (a meta mask has no count: the result's shape is the input's all the same)
    n = source._data.size if is_meta(m) else int(m.sum())
    if n > source._data.size:
        raise RuntimeError(
            "masked_scatter: expected source to have at least as many elements "
            "as the ones selected by the mask"
        )
    vals = GetItem.apply(source.reshape(-1), (slice(0, n),))
    return IndexPut.apply(input, (m,), vals, False)


def unravel_index(indices, shape):
    """Flat indices to a tuple of coordinate tensors (int64) for ``shape``."""
    if isinstance(shape, int):
        shape = (shape,)
    shape = tuple(int(s) for s in shape)
    if not isinstance(indices, Tensor):
        from ..creation import tensor

        indices = tensor(indices)
    d = indices._data
    if d.dtype.kind not in "iu":
        raise TypeError(f"expected 'indices' to be integer dtype, but got {indices.dtype}")
    if builtins.any(s < 0 for s in shape):
        raise RuntimeError(f"'shape' cannot have negative values, but got {tuple(shape)}")
    n = int(np.prod(shape, dtype=np.int64))
    if d.size and (int(d.min()) < -n or int(d.max()) >= n):
        raise RuntimeError(f"'indices' must be in range [-{n}, {n - 1}]")
    xp = get_array_module(d)
    flat = d.astype(np.int64) % builtins.max(n, 1)
    out = []
    for s in reversed(shape):
        out.append(flat % s if s else flat * 0)
        flat = flat // s if s else flat
    return tuple(Tensor._wrap(xp.asarray(o)) for o in reversed(out))


index_put_ = make_inplace(index_put, "index_put_")
