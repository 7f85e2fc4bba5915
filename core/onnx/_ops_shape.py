"""Sizes, reshaping, joining/splitting, indexing and dtype conversion."""

from __future__ import annotations

import numpy as np

from . import OnnxExporterError
from ._context import Sym, _np_of
from ._ops_basic import _sizes, rank, typed
from ._registry import fn

_BIG = np.iinfo(np.int64).max


def _dim_value(ctx, x: Sym, d: int):
    """``x.size(d)``: a Python int when it is fixed, else an int64 scalar Sym."""
    d = d % max(x.rank, 1)
    if isinstance(x.dyn, frozenset) and d in x.dyn:
        name = ctx.op("Gather", [ctx.shape_of(x), ctx.const(np.asarray(d, np.int64))], axis=0)
        return Sym(name, int(x.shape[d]), True)
    return int(x.shape[d])


@fn("size")
def _size(ctx, x, dim=None):
    if dim is not None:
        return _dim_value(ctx, x, int(dim))
    return tuple(_dim_value(ctx, x, d) for d in range(x.rank))


@fn("dim", "ndimension")
def _dim(ctx, x):
    return x.rank


@fn("numel", "nelement")
def _numel(ctx, x):
    if x.dyn:
        return Sym(
            ctx.reduce("ReduceProd", ctx.shape_of(x), None, False), int(np.prod(x.shape)), True
        )
    return int(np.prod(x.shape))


@fn("getattr")
def _getattr(ctx, obj, name, *default):
    if isinstance(obj, Sym):
        if name == "shape":
            return _size(ctx, obj)
        if name == "ndim":
            return obj.rank
        if name in ("T", "mT"):
            return (
                _transpose(ctx, obj, -2, -1)
                if name == "mT" or obj.rank == 2
                else ctx.op("Transpose", [obj], perm=list(range(obj.rank))[::-1])
            )
        if name in ("dtype", "device", "is_cuda", "requires_grad", "is_quantized", "layout"):
            return getattr(obj.ex, name)
        if name == "data":
            return obj
    raise OnnxExporterError(f"getattr(..., {name!r}) is not converted")


@fn("view", "reshape")
def _reshape(ctx, x, *shape):
    shape = _sizes(shape)
    if len(shape) == 1 and isinstance(shape[0], Sym) and shape[0].rank == 1:
        return ctx.op("Reshape", [x, typed(ctx, shape[0], np.int64)])
    if any(not isinstance(s, (int, Sym)) for s in shape):  # x.view(dtype)
        raise OnnxExporterError(f"view with {shape!r} is not converted")
    return ctx.op("Reshape", [x, ctx.shape_tensor(shape)])


@fn("view_as", "reshape_as")
def _view_as(ctx, x, other):
    return ctx.op("Reshape", [x, ctx.shape_of(other)])


@fn("flatten")
def _flatten(ctx, x, start_dim=0, end_dim=-1):
    r = x.rank
    if r == 0:
        return ctx.op("Reshape", [x, ctx.ints([1])])
    s, e = start_dim % r, end_dim % r
    if s == e:
        return x.name
    if any(d == 0 for d in x.shape):
        raise OnnxExporterError("flatten of an empty tensor is not converted")
    # Reshape's 0 copies the input size at the same index: fine before the merged axes only
    dims = [0] * s + [-1] + [_dim_value(ctx, x, d) for d in range(e + 1, r)]
    return ctx.op("Reshape", [x, ctx.shape_tensor(dims)])


@fn("unflatten")
def _unflatten(ctx, x, dim, sizes):
    r = x.rank
    dim = dim % r
    dims = [0] * dim + list(sizes) + [_dim_value(ctx, x, d) for d in range(dim + 1, r)]
    return ctx.op("Reshape", [x, ctx.shape_tensor(dims)])


@fn("squeeze")
def _squeeze(ctx, x, dim=None):
    if dim is None:
        return ctx.squeeze(x, [i for i, s in enumerate(x.shape) if s == 1])
    dims = [dim] if isinstance(dim, int) else list(dim)
    dims = [d for d in dims if x.shape[d] == 1]  # torch ignores dims that are not 1
    return ctx.squeeze(x, dims) if dims else x.name


@fn("unsqueeze")
def _unsqueeze(ctx, x, dim):
    return ctx.unsqueeze(x, [dim % (x.rank + 1)])


@fn("permute")
def _permute(ctx, x, *dims):
    dims = _sizes(dims)
    return ctx.op("Transpose", [x], perm=[int(d) % x.rank for d in dims])


@fn("transpose", "swapaxes", "swapdims")
def _transpose(ctx, x, dim0, dim1):
    perm = list(range(x.rank))
    a, b = dim0 % x.rank, dim1 % x.rank
    perm[a], perm[b] = perm[b], perm[a]
    return ctx.op("Transpose", [x], perm=perm)


@fn("t")
def _t(ctx, x):
    return x.name if x.rank < 2 else ctx.op("Transpose", [x], perm=[1, 0])


@fn("movedim", "moveaxis")
def _movedim(ctx, x, source, destination):
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    r = x.rank
    order = [d for d in range(r) if d not in [s % r for s in src]]
    for s, d in sorted(zip([s % r for s in src], [d % r for d in dst]), key=lambda t: t[1]):
        order.insert(d, s)
    return ctx.op("Transpose", [x], perm=order)


@fn("expand")
def _expand(ctx, x, *sizes):
    sizes = _sizes(sizes)
    # ONNX Expand broadcasts, so -1 ("keep") is a 1
    sizes = [1 if isinstance(s, int) and s == -1 else s for s in sizes]
    return ctx.op("Expand", [x, ctx.shape_tensor(sizes)])


@fn("expand_as", "broadcast_to")
def _expand_as(ctx, x, other):
    if isinstance(other, (list, tuple)):
        return _expand(ctx, x, list(other))
    return ctx.op("Expand", [x, ctx.shape_of(other)])


@fn("repeat")
def _repeat(ctx, x, *sizes):
    sizes = _sizes(sizes)
    extra = len(sizes) - x.rank
    src = ctx.unsqueeze(x, list(range(extra))) if extra > 0 else x.name
    return ctx.op("Tile", [src, ctx.shape_tensor(sizes)])


@fn("cat", "concat", "concatenate")
def _cat(ctx, tensors, dim=0, axis=None):
    dim = axis if axis is not None else dim
    dt = ctx.out_dtype()
    parts = [
        typed(ctx, t, dt)
        for t in tensors
        if not (_np_of(t.ex if isinstance(t, Sym) else t).size == 0 and rank(t) == 1)
    ]
    return ctx.op("Concat", parts, axis=int(dim))


@fn("stack")
def _stack(ctx, tensors, dim=0):
    dt = ctx.out_dtype()
    r = rank(tensors[0])
    d = dim % (r + 1)
    return ctx.op("Concat", [ctx.unsqueeze(typed(ctx, t, dt), [d]) for t in tensors], axis=d)


def _split_sizes(x: Sym, size_or_sections, dim: int) -> list[int]:
    n = x.shape[dim]
    if isinstance(x.dyn, frozenset) and dim % x.rank in x.dyn:
        raise OnnxExporterError("split/chunk along a dynamic axis is not converted")
    if isinstance(size_or_sections, int):
        return [min(size_or_sections, n - i) for i in range(0, n, size_or_sections)]
    return [int(s) for s in size_or_sections]


def _split_n(ctx, x, sizes, dim):
    if len(sizes) == 1:
        return (ctx.op("Identity", [x]),)
    outs = ctx.op("Split", [x, ctx.ints(sizes)], n_out=len(sizes), axis=int(dim))
    return tuple(outs)


@fn("split")
def _split(ctx, x, split_size_or_sections, dim=0):
    return _split_n(ctx, x, _split_sizes(x, split_size_or_sections, dim), dim)


@fn("split_with_sizes")
def _split_with_sizes(ctx, x, split_sizes, dim=0):
    return _split_n(ctx, x, list(split_sizes), dim)


@fn("chunk")
def _chunk(ctx, x, chunks, dim=0):
    n = x.shape[dim]
    size = -(-n // chunks)
    return _split_n(ctx, x, _split_sizes(x, size, dim), dim)


@fn("unbind")
def _unbind(ctx, x, dim=0):
    parts = _split_n(ctx, x, [1] * x.shape[dim], dim)
    return tuple(ctx.squeeze(p, [dim]) for p in parts)


@fn("narrow")
def _narrow(ctx, x, dim, start, length):
    end = start + length if not isinstance(start, Sym) and not isinstance(length, Sym) else None
    if end is None:
        raise OnnxExporterError("narrow with run-time start/length is not converted")
    return ctx.op("Slice", [x, ctx.ints([start]), ctx.ints([end]), ctx.ints([dim])])


@fn("index_select")
def _index_select(ctx, x, dim, index):
    return ctx.op("Gather", [x, typed(ctx, index, np.int64)], axis=int(dim))


@fn("gather")
def _gather(ctx, x, dim, index, sparse_grad=False):
    return ctx.op("GatherElements", [x, typed(ctx, index, np.int64)], axis=int(dim))


@fn("take_along_dim")
def _take_along_dim(ctx, x, indices, dim):
    return _gather(ctx, x, dim, indices)


@fn("triu")
def _triu(ctx, x, diagonal=0):
    return ctx.op("Trilu", [x, ctx.const(np.asarray(int(diagonal), np.int64))], upper=1)


@fn("tril")
def _tril(ctx, x, diagonal=0):
    return ctx.op("Trilu", [x, ctx.const(np.asarray(int(diagonal), np.int64))], upper=0)


@fn("flip")
def _flip(ctx, x, *dims):
    dims = _sizes(dims)
    n = len(dims)
    return ctx.op(
        "Slice", [x, ctx.ints([-1] * n), ctx.ints([-_BIG] * n), ctx.ints(dims), ctx.ints([-1] * n)]
    )


@fn("einsum")
def _einsum(ctx, equation, *operands):
    ops = _sizes(operands)
    dt = ctx.out_dtype()
    return ctx.op("Einsum", [typed(ctx, o, dt) for o in ops], equation=equation.replace(" ", ""))


# ---- dtype conversion --------------------------------------------------------------------
def _cast_to(ctx, x, dt):
    return ctx.cast(x.name, dt) if x.np_dtype != dt else x.name


@fn("to", "type")
def _to(ctx, x, *args, **kwargs):
    return _cast_to(ctx, x, ctx.out_dtype())


for _m in (
    "float",
    "double",
    "half",
    "long",
    "int",
    "bool",
    "short",
    "byte",
    "char",
    "bfloat16",
    "cpu",
    "cuda",
):
    fn(_m, method_only=True)(_to)


@fn("as_tensor", "asarray")
def _as_tensor(ctx, x, *args, **kwargs):
    # a traced cond's predicate (``where(as_tensor(pred), t, f)``): a cast at most
    if isinstance(x, Sym):
        return _cast_to(ctx, x, ctx.out_dtype())
    return ctx.const(np.asarray(_np_of(x) if hasattr(x, "shape") else x, dtype=ctx.out_dtype()))


@fn("type_as")
def _type_as(ctx, x, other):
    return _cast_to(ctx, x, ctx.out_dtype())


# ---- indexing ----------------------------------------------------------------------------
def _idx_value(ctx, v):
    if isinstance(v, Sym):
        return ctx.op("Reshape", [typed(ctx, v, np.int64), ctx.ints([1])])
    return ctx.ints([int(v)])


@fn("getitem")
def _getitem(ctx, obj, idx):
    if not isinstance(obj, Sym):  # a Python container (shape tuple, module outputs)
        if isinstance(idx, Sym):
            raise OnnxExporterError("indexing a Python sequence with a run-time value")
        return obj[idx]
    items = list(idx) if isinstance(idx, tuple) else [idx]
    n_real = sum(1 for it in items if it is not None and it is not Ellipsis)
    if any(it is Ellipsis for it in items):
        k = items.index(Ellipsis)
        items = items[:k] + [slice(None)] * (obj.rank - n_real) + items[k + 1 :]
    cur_name, axis = obj.name, 0
    for it in items:
        if it is None:
            cur_name = ctx.unsqueeze(cur_name, [axis])
            axis += 1
        elif isinstance(it, slice):
            if it.start in (None, 0) and it.stop is None and it.step in (None, 1):
                axis += 1
                continue
            step = 1 if it.step is None else it.step
            if isinstance(step, Sym) or step <= 0:
                raise OnnxExporterError(
                    "slices with a run-time or non-positive step are not converted"
                )
            start = 0 if it.start is None else it.start
            stop = _BIG if it.stop is None else it.stop
            cur_name = ctx.op(
                "Slice",
                [
                    cur_name,
                    _idx_value(ctx, start),
                    _idx_value(ctx, stop),
                    ctx.ints([axis]),
                    ctx.ints([step]),
                ],
            )
            axis += 1
        elif isinstance(it, bool):
            raise OnnxExporterError("indexing with a Python bool is not converted")
        elif isinstance(it, int):
            cur_name = ctx.op("Gather", [cur_name, ctx.const(np.asarray(it, np.int64))], axis=axis)
        elif isinstance(it, Sym):
            if it.np_dtype == np.bool_:
                raise OnnxExporterError(
                    "boolean-mask indexing gives a data-dependent shape and is not converted"
                )
            cur_name = ctx.op("Gather", [cur_name, typed(ctx, it, np.int64)], axis=axis)
            axis += it.rank
        elif isinstance(it, (list, tuple)) or hasattr(it, "shape"):
            arr = _np_of(it) if hasattr(it, "shape") else np.asarray(it)
            if arr.dtype == np.bool_:
                raise OnnxExporterError("boolean-mask indexing is not converted")
            cur_name = ctx.op("Gather", [cur_name, ctx.const(arr.astype(np.int64))], axis=axis)
            axis += arr.ndim
        else:
            raise OnnxExporterError(f"index of type {type(it).__name__} is not converted")
    return cur_name if cur_name != obj.name else ctx.op("Identity", [obj])


@fn("setitem")
def _setitem(ctx, *a):
    raise OnnxExporterError(
        "in-place assignment (x[i] = v) is not converted; build the "
        "tensor with ember.where/ember.cat instead"
    )


@fn("len")
def _len(ctx, x):
    return _dim_value(ctx, x, 0)


@fn("topk")
def _topk(ctx, x, k, dim=-1, largest=True, sorted=True):
    kk = (
        ctx.op("Reshape", [typed(ctx, k, np.int64), ctx.ints([1])])
        if isinstance(k, Sym)
        else ctx.ints([int(k)])
    )
    values, idx = ctx.op(
        "TopK",
        [x, kk],
        n_out=2,
        axis=int(dim),
        largest=int(bool(largest)),
        sorted=int(bool(sorted)),
    )
    return (values, idx)


@fn("one_hot")
def _one_hot(ctx, x, num_classes=-1):
    if num_classes == -1:
        raise OnnxExporterError("one_hot needs num_classes (the size cannot depend on data)")
    depth = ctx.const(np.asarray(int(num_classes), np.int64))
    return ctx.op("OneHot", [typed(ctx, x, np.int64), depth, ctx.ints([0, 1])], axis=-1)
