"""ONNX conversions of elementwise math, comparisons, clamp/where/lerp and addmm.

The shared helpers (``dtype_of``, ``typed``, ``rank``, ``_c``) live in ``_ops_common`` and the
reductions and run-time-size creation in ``_ops_reduce``; both are re-exported here.
"""

from __future__ import annotations

from typing import Any  # noqa: F401

import numpy as np

from . import OnnxExporterError
from ._context import Sym, _np_of  # noqa: F401
from ._ops_common import _c, dtype_of, rank, typed  # noqa: F401  (imported from here by siblings)
from ._ops_reduce import (  # noqa: F401  (re-exported; importing it registers the reductions)
    _all,
    _any,
    _arange,
    _arg,
    _axes,
    _cumsum,
    _filled,
    _full,
    _like,
    _minmax,
    _new,
    _norm,
    _reduction,
    _sizes,
    _var_std,
    _zeros,
)
from ._registry import fn


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
