"""Elementwise math, comparisons, activations, reductions and tensor creation."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import OnnxExporterError
from ._context import Sym, _np_of
from ._registry import fn


def dtype_of(v: Any) -> np.dtype | None:
    """numpy dtype of a Sym or constant tensor; None for Python scalars."""
    from ember import Tensor

    if isinstance(v, Sym):
        return v.np_dtype
    if isinstance(v, (Tensor, np.ndarray)):
        return _np_of(v).dtype
    return None


def typed(ctx, v: Any, dt) -> str:
    """The ONNX name of ``v`` as dtype ``dt`` (casting a Sym, converting a constant)."""
    dt = np.dtype(dt)
    if isinstance(v, str):  # an ONNX name made by the caller, already of dtype dt
        return v
    if isinstance(v, Sym):
        return v.name if v.np_dtype == dt else ctx.cast(v.name, dt)
    return ctx.const(_np_of(v), dtype=dt)


def rank(v: Any) -> int:
    return len(getattr(v.ex if isinstance(v, Sym) else v, "shape", ()))


def _promote(*vals) -> np.dtype:
    dts = [dtype_of(v) for v in vals if dtype_of(v) is not None]
    if not dts:
        return np.dtype(np.float32)
    dt = np.result_type(*dts)
    if any(isinstance(v, float) for v in vals) and not np.issubdtype(dt, np.floating):
        dt = np.dtype(np.float32)
    return dt


# ---- binary arithmetic -------------------------------------------------------------------
def _arith(op_type: str, swap: bool = False):
    def h(ctx, a, b, *rest, alpha=None, **kw):
        if swap:
            a, b = b, a
        if rest and alpha is None:  # ember.add(x, y, alpha) positional
            alpha = rest[0]
        dt = ctx.out_dtype()
        if dt == np.bool_:
            dt = _promote(a, b)
        if alpha is not None and alpha != 1:
            b = ctx.op("Mul", [typed(ctx, b, dt), ctx.const(np.asarray(alpha, dt))])
        return ctx.op(op_type, [typed(ctx, a, dt), typed(ctx, b, dt)])

    return h


for _names, _op in (
    (("add", "__add__", "iadd"), "Add"),
    (("sub", "subtract", "__sub__", "isub"), "Sub"),
    (("mul", "multiply", "__mul__", "imul"), "Mul"),
    (("pow", "__pow__", "float_power"), "Pow"),
    (("matmul", "mm", "bmm", "__matmul__"), "MatMul"),
    (("maximum", "fmax"), "Max"),
    (("minimum", "fmin"), "Min"),
):
    fn(*_names)(_arith(_op))
fn("rsub")(_arith("Sub", swap=True))
fn("__radd__")(_arith("Add", swap=True))
fn("__rsub__")(_arith("Sub", swap=True))
fn("__rmul__")(_arith("Mul", swap=True))
fn("__rpow__")(_arith("Pow", swap=True))
fn("__rmatmul__")(_arith("MatMul", swap=True))


@fn("truediv", "div", "divide", "true_divide", "__truediv__", "itruediv")
def _div(ctx, a, b, rounding_mode=None):
    dt = ctx.out_dtype()
    if rounding_mode == "floor" or (rounding_mode is None and not np.issubdtype(dt, np.floating)):
        return _floordiv(ctx, a, b)
    out = ctx.op("Div", [typed(ctx, a, dt), typed(ctx, b, dt)])
    return (
        ctx.op("Floor" if rounding_mode == "floor" else "Identity", [out])
        if rounding_mode != "trunc"
        else _trunc(ctx, out, dt)
    )


def _trunc(ctx, x, dt):
    if not np.issubdtype(dt, np.floating):
        return x
    return ctx.op("Mul", [ctx.op("Floor", [ctx.op("Abs", [x])]), ctx.op("Sign", [x])])


@fn("floordiv", "floor_divide", "__floordiv__")
def _floordiv(ctx, a, b):
    dt = ctx.out_dtype()
    if np.issubdtype(dt, np.floating):
        return ctx.op("Floor", [ctx.op("Div", [typed(ctx, a, dt), typed(ctx, b, dt)])])
    # integer floor division: Div truncates, so step down where the signs differ
    fa, fb = typed(ctx, a, np.float64), typed(ctx, b, np.float64)
    return ctx.cast(ctx.op("Floor", [ctx.op("Div", [fa, fb])]), dt)


@fn("mod", "remainder", "__mod__")
def _mod(ctx, a, b):
    dt = ctx.out_dtype()
    if np.issubdtype(dt, np.floating):
        a_, b_ = typed(ctx, a, dt), typed(ctx, b, dt)
        q = ctx.op("Floor", [ctx.op("Div", [a_, b_])])
        return ctx.op("Sub", [a_, ctx.op("Mul", [q, b_])])
    return ctx.op("Mod", [typed(ctx, a, dt), typed(ctx, b, dt)], fmod=0)


@fn("fmod")
def _fmod(ctx, a, b):
    dt = ctx.out_dtype()
    return ctx.op("Mod", [typed(ctx, a, dt), typed(ctx, b, dt)], fmod=1)


@fn("atan2")
def _atan2(ctx, a, b):
    raise OnnxExporterError("atan2 has no ONNX operator")


# ---- comparisons and logic ---------------------------------------------------------------
def _cmp(op_type: str, negate: bool = False):
    def h(ctx, a, b):
        dt = _promote(a, b)
        out = ctx.op(op_type, [typed(ctx, a, dt), typed(ctx, b, dt)])
        return ctx.op("Not", [out]) if negate else out

    return h


for _names, _op, _neg in (
    (("eq", "__eq__"), "Equal", False),
    (("ne", "__ne__", "not_equal"), "Equal", True),
    (("lt", "__lt__", "less"), "Less", False),
    (("le", "__le__", "less_equal"), "LessOrEqual", False),
    (("gt", "__gt__", "greater"), "Greater", False),
    (("ge", "__ge__", "greater_equal"), "GreaterOrEqual", False),
):
    fn(*_names)(_cmp(_op, _neg))


def _logic(op_type: str):
    def h(ctx, a, b):
        dt = ctx.out_dtype()
        if dt == np.bool_:
            return ctx.op(op_type, [typed(ctx, a, np.bool_), typed(ctx, b, np.bool_)])
        name = {"And": "BitwiseAnd", "Or": "BitwiseOr", "Xor": "BitwiseXor"}[op_type]
        return ctx.op(name, [typed(ctx, a, dt), typed(ctx, b, dt)])

    return h


fn("and_", "logical_and", "bitwise_and", "__and__")(_logic("And"))
fn("or_", "logical_or", "bitwise_or", "__or__")(_logic("Or"))
fn("xor", "logical_xor", "bitwise_xor", "__xor__")(_logic("Xor"))


@fn("logical_not", "bitwise_not", "invert", "__invert__", "not_")
def _not(ctx, x):
    return ctx.op("Not", [typed(ctx, x, np.bool_)])


# ---- unary math --------------------------------------------------------------------------
def _unary(op_type: str):
    def h(ctx, x, *a, **k):
        dt = ctx.out_dtype()
        return ctx.op(op_type, [typed(ctx, x, dt)])

    return h


for _names, _op in (
    (("neg", "negative", "__neg__"), "Neg"),
    (("abs", "absolute", "__abs__"), "Abs"),
    (("exp",), "Exp"),
    (("log",), "Log"),
    (("sqrt",), "Sqrt"),
    (("sin",), "Sin"),
    (("cos",), "Cos"),
    (("tan",), "Tan"),
    (("asin", "arcsin"), "Asin"),
    (("acos", "arccos"), "Acos"),
    (("atan", "arctan"), "Atan"),
    (("sinh",), "Sinh"),
    (("cosh",), "Cosh"),
    (("tanh",), "Tanh"),
    (("sigmoid",), "Sigmoid"),
    (("erf",), "Erf"),
    (("floor",), "Floor"),
    (("ceil",), "Ceil"),
    (("sign",), "Sign"),
    (("reciprocal",), "Reciprocal"),
    (("relu",), "Relu"),
    (("softsign",), "Softsign"),
    (("isnan",), "IsNaN"),
    (("contiguous", "clone", "detach", "positive", "alias"), "Identity"),
):
    fn(*_names)(_unary(_op))


@fn("round")
def _round(ctx, x, decimals=0):
    if decimals:
        s = ctx.const(np.asarray(10.0**decimals, np.float32))
        return ctx.op("Div", [ctx.op("Round", [ctx.op("Mul", [x, s])]), s])
    return ctx.op("Round", [x])


@fn("rsqrt")
def _rsqrt(ctx, x):
    return ctx.op("Reciprocal", [ctx.op("Sqrt", [x])])


@fn("square")
def _square(ctx, x):
    return ctx.op("Mul", [x, x])


@fn("log1p")
def _log1p(ctx, x):
    return ctx.op("Log", [ctx.op("Add", [x, _c(ctx, 1.0, x)])])


@fn("expm1")
def _expm1(ctx, x):
    return ctx.op("Sub", [ctx.op("Exp", [x]), _c(ctx, 1.0, x)])


@fn("log2", "log10")
def _logb(ctx, x):
    raise OnnxExporterError("log2/log10: not converted")


def _c(ctx, value, like) -> str:
    """A scalar constant of ``like``'s dtype."""
    return ctx.const(np.asarray(value, dtype=dtype_of(like) or np.float32))


@fn("clamp", "clip")
def _clamp(ctx, x, min=None, max=None):
    dt = dtype_of(x)
    out = x.name
    for bound, op_type in ((min, "Max"), (max, "Min")):
        if bound is None:
            continue
        out = ctx.op(op_type, [out, typed(ctx, bound, dt)])
    return out


@fn("clamp_min")
def _clamp_min(ctx, x, min):
    return _clamp(ctx, x, min=min)


@fn("clamp_max")
def _clamp_max(ctx, x, max):
    return _clamp(ctx, x, max=max)


@fn("where")
def _where(ctx, cond, a=None, b=None):
    if a is None:
        raise OnnxExporterError("where(cond) with one argument (nonzero) is not converted")
    dt = ctx.out_dtype()
    return ctx.op("Where", [typed(ctx, cond, np.bool_), typed(ctx, a, dt), typed(ctx, b, dt)])


@fn("masked_fill")
def _masked_fill(ctx, x, mask, value):
    dt = dtype_of(x)
    return ctx.op("Where", [typed(ctx, mask, np.bool_), typed(ctx, value, dt), typed(ctx, x, dt)])


@fn("lerp")
def _lerp(ctx, a, b, w):
    dt = ctx.out_dtype()
    a_, b_ = typed(ctx, a, dt), typed(ctx, b, dt)
    return ctx.op("Add", [a_, ctx.op("Mul", [typed(ctx, w, dt), ctx.op("Sub", [b_, a_])])])


def _np_dtype(dtype) -> np.dtype:
    from ember import tensor

    return _np_of(tensor([0], dtype=dtype)).dtype


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


@fn("addmm", "baddbmm")
def _addmm(ctx, input, m1, m2, *, beta=1, alpha=1):
    dt = ctx.out_dtype()
    prod = ctx.op("MatMul", [typed(ctx, m1, dt), typed(ctx, m2, dt)])
    if alpha != 1:
        prod = ctx.op("Mul", [prod, ctx.const(np.asarray(alpha, dt))])
    base = typed(ctx, input, dt)
    if beta != 1:
        base = ctx.op("Mul", [base, ctx.const(np.asarray(beta, dt))])
    return ctx.op("Add", [base, prod]) if beta != 0 else prod
