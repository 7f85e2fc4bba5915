"""Older opsets (11-14): the node forms that changed since, rewritten as each node is emitted.

Handlers emit the current forms (opset 14+); ``Ctx.op`` passes every node through
:func:`adapt` when the export opset is older, which rewrites the forms that differ
(from the ONNX operator changelog):

* ``Squeeze`` / ``Unsqueeze`` ``axes``, ``Split`` ``split`` and ``ReduceSum`` ``axes`` are
  inputs from 13 and attributes before (the constant input becomes the attribute);
* ``Softmax`` / ``LogSoftmax`` coerce their input to 2-D before 13, so only the last axis
  keeps its meaning: another axis is moved last with a ``Transpose`` and back;
* ``Resize`` takes ``roi`` and ``scales`` as required inputs before 13 (empty tensors);
* ``Shape``'s ``start`` / ``end`` are 15+ (a ``Slice`` of the whole shape before);
* ``Trilu`` and ``HardSwish`` are 14+, ``GreaterOrEqual`` / ``LessOrEqual`` 12+: composed
  from older operators;
* ``Celu`` is 12+ (composed before); operators with no older form (``Einsum`` 12+,
  per-channel ``QuantizeLinear`` 13+, ...) raise an error naming the operator and the
  minimum opset.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import UnsupportedOperatorError

OLDEST_OPSET = 11

# operators (or forms) with no rewrite here: the first opset that has them
_MIN_OPSET = {
    "Einsum": 12,
    "LayerNormalization": 17,
    "BitwiseAnd": 18,
    "BitwiseOr": 18,
    "BitwiseXor": 18,
    "BitwiseNot": 18,
}
_AXES_AS_ATTR = {"Squeeze": "axes", "Unsqueeze": "axes", "ReduceSum": "axes", "Split": "split"}
_INT_MAX = 2**62


def too_old(op_type: str, need: int, opset: int, what: str = "") -> UnsupportedOperatorError:
    return UnsupportedOperatorError(
        f"ONNX operator '{op_type}'{what} needs opset {need} or newer; this export uses opset "
        f"{opset} (pass opset_version={need} or higher)"
    )


def adapt(ctx, op_type: str, inputs: list, n_out: int, attrs: dict) -> Any:
    """Emit ``op_type`` in the export opset's form; None when the node needs no change."""
    opset = ctx.opset
    need = _MIN_OPSET.get(op_type)
    if need is not None and opset < need:
        raise too_old(op_type, need, opset)
    if op_type in ("QuantizeLinear", "DequantizeLinear") and "axis" in attrs and opset < 13:
        raise too_old(op_type, 13, opset, " with per-channel scales (axis)")
    if op_type in _AXES_AS_ATTR and opset < 13 and len(inputs) > 1 and inputs[1] not in ("", None):
        return _input_to_attr(ctx, op_type, inputs, n_out, attrs)
    if op_type in ("Softmax", "LogSoftmax") and opset < 13:
        return _softmax(ctx, op_type, inputs[0], attrs)
    if op_type == "Resize" and opset < 13:
        return _resize(ctx, inputs, attrs)
    if op_type == "Shape" and opset < 15 and ("start" in attrs or "end" in attrs):
        shape = ctx.op("Shape", inputs[:1])
        start, end = attrs.get("start", 0), attrs.get("end", _INT_MAX)
        return ctx.op("Slice", [shape, ctx.ints([start]), ctx.ints([end]), ctx.ints([0])])
    if op_type == "Trilu" and opset < 14:
        return _trilu(ctx, inputs, attrs)
    if op_type == "HardSwish" and opset < 14:
        x = inputs[0]
        return ctx.op("Mul", [x, ctx.op("HardSigmoid", [x], alpha=1.0 / 6, beta=0.5)])
    if op_type == "Celu" and opset < 12:  # max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
        x, alpha = inputs[0], float(attrs.get("alpha", 1.0))
        a = ctx.const(np.asarray(alpha, np.float32))  # Celu is float32-only
        z = ctx.const(np.asarray(0.0, np.float32))
        e = ctx.op(
            "Mul",
            [
                ctx.op(
                    "Sub",
                    [
                        ctx.op("Exp", [ctx.op("Div", [x, a])]),
                        ctx.const(np.asarray(1.0, np.float32)),
                    ],
                ),
                a,
            ],
        )
        return ctx.op("Add", [ctx.op("Max", [x, z]), ctx.op("Min", [e, z])])
    if op_type in ("GreaterOrEqual", "LessOrEqual") and opset < 12:
        # a >= b is not (a < b) (NaN operands compare true here, false in opset 12+)
        strict = "Less" if op_type == "GreaterOrEqual" else "Greater"
        return ctx.op("Not", [ctx.op(strict, inputs)])
    return None


def _input_to_attr(ctx, op_type: str, inputs: list, n_out: int, attrs: dict):
    value = ctx.const_value(inputs[1])
    if value is None:
        name = _AXES_AS_ATTR[op_type]
        raise too_old(op_type, 13, ctx.opset, f" with a run-time '{name}' input")
    attrs = {**attrs, _AXES_AS_ATTR[op_type]: [int(v) for v in np.asarray(value).reshape(-1)]}
    return ctx.op(op_type, [inputs[0]], n_out=n_out, _raw=True, **attrs)


def _rank(v: Any) -> int | None:
    shape = getattr(getattr(v, "ex", None), "shape", None)
    return None if shape is None else len(shape)


def _softmax(ctx, op_type: str, x: Any, attrs: dict):
    axis = int(attrs.get("axis", -1))
    r = _rank(x)
    if axis == -1 or (r is not None and axis == r - 1):
        return ctx.op(op_type, [x], _raw=True, axis=-1)
    if r is None:
        raise too_old(op_type, 13, ctx.opset, f" over axis {axis} of a value of unknown rank")
    axis %= r
    perm = list(range(r))
    perm[axis], perm[-1] = perm[-1], perm[axis]  # a swap: its own inverse
    y = ctx.op(op_type, [ctx.op("Transpose", [x], perm=perm)], _raw=True, axis=-1)
    return ctx.op("Transpose", [y], perm=perm)


def _resize(ctx, inputs: list, attrs: dict):
    inputs = list(inputs) + [""] * (3 - len(inputs))
    empty = ctx.const(np.zeros(0, np.float32))
    x, roi, scales = inputs[:3]
    rest = inputs[3:]
    inputs = [x, roi if roi != "" else empty, scales if scales != "" else empty] + rest
    return ctx.op("Resize", inputs, _raw=True, **attrs)


def _trilu(ctx, inputs: list, attrs: dict):
    """Trilu as Where(mask, x, 0) with the mask from Range over the last two sizes."""
    x = inputs[0]
    k = inputs[1] if len(inputs) > 1 and inputs[1] != "" else ctx.const(np.asarray(0, np.int64))
    shape = ctx.op("Shape", [x])
    one, zero = ctx.const(np.asarray(1, np.int64)), ctx.const(np.asarray(0, np.int64))
    n = ctx.op("Gather", [shape, ctx.const(np.asarray(-2, np.int64))], axis=0)
    m = ctx.op("Gather", [shape, ctx.const(np.asarray(-1, np.int64))], axis=0)
    rows = ctx.op("Unsqueeze", [ctx.op("Range", [zero, n, one]), ctx.ints([1])])
    cols = ctx.op("Unsqueeze", [ctx.op("Range", [zero, m, one]), ctx.ints([0])])
    d = ctx.op("Sub", [cols, rows])  # j - i
    upper = int(attrs.get("upper", 1))
    keep = ctx.op("Not", [ctx.op("Less" if upper else "Greater", [d, k])])
    dt = getattr(x, "np_dtype", None)
    # a zero of x's dtype (x - x for an intermediate of unknown dtype, finite in ember's uses)
    zeros = ctx.const(np.asarray(0, dt)) if dt is not None else ctx.op("Sub", [x, x])
    return ctx.op("Where", [keep, x, zeros])


def drop_unused_constants(ctx) -> None:
    """Remove the constants that only fed an input turned into an attribute (onnxruntime warns
    about unused initializers); weights are kept."""
    used: set[str] = set()

    def walk(nodes) -> None:
        for n in nodes:
            used.update(n.input)
            for a in n.attribute:
                if a.HasField("g"):
                    walk(a.g.node)
                for g in a.graphs:
                    walk(g.node)

    walk(ctx.nodes)
    keep = used | set(ctx.param_names)
    ctx.initializers = [t for t in ctx.initializers if t.name in keep]
