"""ONNX conversions of the reductions (sum/mean/max/argmax/var/norm/all/any, cumsum) and of
tensor creation from run-time sizes (zeros/full/*_like/new_*/arange)."""

from __future__ import annotations

import numpy as np

from . import OnnxExporterError
from ._context import Sym, _np_of
from ._ops_common import _c, dtype_of, typed
from ._registry import fn


# ---- reductions --------------------------------------------------------------------------
def _axes(dim, x) -> list | None:
    if dim is None:
        return None
    if isinstance(dim, (list, tuple)):
        return [int(d) for d in dim] or None
    return [int(dim)]


def _reduction(op_type: str):
    def h(ctx, x, dim=None, keepdim=False, *, dtype=None, **kw):
        if isinstance(dim, bool):  # sum(x, keepdim) mistaken positional: not a torch form
            raise OnnxExporterError(f"{op_type}: unexpected bool dim")
        dt = ctx.out_dtype()
        src = typed(ctx, x, dt) if op_type == "ReduceSum" else x.name
        return ctx.reduce(op_type, src, _axes(dim, x), keepdim)

    return h


fn("sum")(_reduction("ReduceSum"))
fn("mean")(_reduction("ReduceMean"))
fn("prod")(_reduction("ReduceProd"))
fn("amax")(_reduction("ReduceMax"))
fn("amin")(_reduction("ReduceMin"))
fn("logsumexp")(_reduction("ReduceLogSumExp"))


def _minmax(op_type: str, arg_op: str, binary: str):
    def h(ctx, x, dim=None, keepdim=False):
        if isinstance(dim, (Sym,)) or (dim is not None and not isinstance(dim, int)):
            return ctx.op(binary, [x, typed(ctx, dim, dtype_of(x))])  # max(a, b)
        if dim is None:
            return ctx.reduce(op_type, x, None, False)
        values = ctx.reduce(op_type, x, [dim], keepdim)
        idx = ctx.op(arg_op, [x], axis=int(dim), keepdims=int(bool(keepdim)))
        return (values, idx)

    return h


fn("max")(_minmax("ReduceMax", "ArgMax", "Max"))
fn("min")(_minmax("ReduceMin", "ArgMin", "Min"))


def _arg(op_type: str):
    def h(ctx, x, dim=None, keepdim=False):
        if dim is None:
            flat = ctx.op("Reshape", [x, ctx.ints([-1])])
            return ctx.op(op_type, [flat], axis=0, keepdims=0)
        return ctx.op(op_type, [x], axis=int(dim), keepdims=int(bool(keepdim)))

    return h


fn("argmax")(_arg("ArgMax"))
fn("argmin")(_arg("ArgMin"))


def _var_std(is_std: bool):
    def h(ctx, x, dim=None, unbiased=None, keepdim=False, *, correction=None):
        if isinstance(dim, bool):  # var(x, unbiased)
            dim, unbiased = None, dim
        corr = correction if correction is not None else (0 if unbiased is False else 1)
        axes = _axes(dim, x)
        mean = ctx.reduce("ReduceMean", x, axes, True)
        d = ctx.op("Sub", [x, mean])
        ss = ctx.reduce("ReduceSum", ctx.op("Mul", [d, d]), axes, keepdim)
        shape = x.shape
        n = int(np.prod([shape[a] for a in axes])) if axes is not None else int(np.prod(shape))
        if x.dyn and (axes is None or any(a % len(shape) in x.dyn for a in axes)):
            raise OnnxExporterError("var/std over a dynamic axis is not converted")
        v = ctx.op("Div", [ss, _c(ctx, max(n - corr, 0), x)])
        return ctx.op("Sqrt", [v]) if is_std else v

    return h


fn("var")(_var_std(False))
fn("std")(_var_std(True))


@fn("cumsum")
def _cumsum(ctx, x, dim, *, dtype=None):
    dt = ctx.out_dtype()
    return ctx.op("CumSum", [typed(ctx, x, dt), ctx.const(np.asarray(int(dim), np.int64))])


@fn("norm")
def _norm(ctx, x, p="fro", dim=None, keepdim=False, dtype=None):
    if p in ("fro", 2, 2.0, None):
        return ctx.reduce("ReduceL2", x, _axes(dim, x), keepdim)
    if p in (1, 1.0):
        return ctx.reduce("ReduceL1", x, _axes(dim, x), keepdim)
    raise OnnxExporterError(f"norm with p={p!r} is not converted")


@fn("all")
def _all(ctx, x, dim=None, keepdim=False):
    f = ctx.cast(x.name, np.int64)
    return ctx.cast(ctx.reduce("ReduceMin", f, _axes(dim, x), keepdim), np.bool_)


@fn("any")
def _any(ctx, x, dim=None, keepdim=False):
    f = ctx.cast(x.name, np.int64)
    return ctx.cast(ctx.reduce("ReduceMax", f, _axes(dim, x), keepdim), np.bool_)


# ---- creation from run-time sizes --------------------------------------------------------
def _sizes(size) -> list:
    if len(size) == 1 and isinstance(size[0], (list, tuple)):
        return list(size[0])
    return list(size)


def _filled(ctx, shape_name: str, value) -> str:
    dt = ctx.out_dtype()
    return ctx.op("Expand", [ctx.const(np.asarray(value, dtype=dt)), shape_name])


@fn("zeros", "ones", "empty")
def _zeros(ctx, *size, **kw):
    val = 1 if ctx.ex is not None and float(_np_of(ctx.ex).reshape(-1)[:1].sum() or 0) == 1 else 0
    return _filled(ctx, ctx.shape_tensor(_sizes(size)), val)


@fn("full")
def _full(ctx, size, fill_value, **kw):
    return _filled(ctx, ctx.shape_tensor(list(size)), fill_value)


@fn("zeros_like", "ones_like", "empty_like", "full_like")
def _like(ctx, x, fill_value=None, **kw):
    v = (
        fill_value
        if fill_value is not None
        else (float(_np_of(ctx.ex).reshape(-1)[0]) if _np_of(ctx.ex).size else 0)
    )
    return _filled(ctx, ctx.shape_of(x), v)


@fn("new_zeros", "new_ones", "new_empty", "new_full", method_only=True)
def _new(ctx, x, *size, **kw):
    size = _sizes(size)
    if "fill_value" in kw:
        return _filled(ctx, ctx.shape_tensor(size[:-1] if False else size), kw["fill_value"])
    return _zeros(ctx, *size)


@fn("arange")
def _arange(ctx, start, end=None, step=1, **kw):
    if end is None:
        start, end = 0, start
    dt = ctx.out_dtype()
    parts = [
        typed(ctx, v, dt) if isinstance(v, Sym) else ctx.const(np.asarray(v, dt))
        for v in (start, end, step)
    ]
    parts = [ctx.op("Reshape", [p, ctx.ints([])]) for p in parts]
    return ctx.op("Range", parts)
