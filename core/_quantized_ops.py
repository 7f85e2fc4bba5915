"""Ops on quantized tensors reached through their functional forms (``ember.relu(q)``, ...).

``Function.apply`` hands any call with a :class:`~ember.quantized.QTensor` argument to
:func:`quantized_apply` (one ``type(a) is QTensor`` test per tensor argument on the hot path).
Here the ops PyTorch runs on quantized tensors are mapped onto the integer codes and keep the
input's quantization parameters; every other op raises an error that names it, as torch's
"Could not run 'aten::X' with arguments from the 'QuantizedCPU' backend".
"""

from __future__ import annotations

import os
import sys

import numpy as np

from .autograd import function as _function
from .ops import (
    activation_ops,
    adaptive_pool,
    convert,
    elementwise,
    indexing,
    nn_ops,
    pooling,
    reduction,
    reduction_sum,
    resample,
    shape,
)
from .quantized import QTensor, _xp, qint8, quantize_per_tensor, quint8
from .tensor import Tensor

__all__ = ["quantized_apply"]

_CORE = os.path.dirname(os.path.abspath(__file__))
# helpers between the public function and Function.apply, never what the user called
_SKIP = frozenset({"apply", "quantized_apply", "_op_name", "<lambda>", "to_dtype_op"})


def _codes_op(op, q, rest, kwargs):
    """Data movement (reshape, permute, indexing, ...): the op on the codes, same qparams."""
    out = op.apply(Tensor._wrap(q._data), *rest, **kwargs)
    if isinstance(out, tuple):
        return tuple(q._like(o._data) for o in out)
    return q._like(out._data)


def _value_op(op, q, rest, kwargs):
    """Ops that commute with an increasing affine map (max, pooling, nearest resampling):
    computed on the codes as float32 and rounded back (exact for max / nearest)."""
    q._per_tensor(op.__name__.lower())
    return q._code_op(lambda t: op.apply(t, *rest, **kwargs))


def tiled_max_pool(nd: int, q: QTensor, kernel_size, stride, padding, dilation):
    """``max_pool{nd}d`` of a quantized tensor whose windows tile it (kernel == stride, no
    padding or dilation, sizes divisible: the CNNs' 2x2 pools) as pairwise maxima of strided
    views of the codes, or None for other geometries. Max commutes with the increasing map
    from codes to values, so these are the general path's codes; that path pools float32
    copies of them (1.7 ms against 0.3 ms for the digits CNN's 64x64x8x8 pool)."""

    def tup(v):
        return (int(v),) * nd if isinstance(v, (int, np.integer)) else tuple(int(e) for e in v)

    kernel = tup(kernel_size)
    strides = (
        kernel
        if stride is None or (isinstance(stride, (list, tuple)) and not stride)
        else tup(stride)
    )
    if (
        q._axis is not None
        or len(kernel) != nd
        or strides != kernel
        or any(tup(padding))
        or any(d != 1 for d in tup(dilation))
        or q._data.ndim not in (nd + 1, nd + 2)
    ):
        return None
    x = q._data
    lead = x.ndim - nd
    if any(n % k or n == 0 for n, k in zip(x.shape[lead:], kernel)):
        return None
    xp = _xp(x)
    for ax, k in zip(range(lead, x.ndim), kernel):  # one spatial axis at a time: k - 1 maxima
        y = None
        for o in range(k):  # (a reshape + max over several axes is ~5x slower on uint8)
            v = x[(slice(None),) * ax + (slice(o, None, k),)]
            y = v if y is None else xp.maximum(y, v)
        x = y
    return q._like(xp.ascontiguousarray(x))


def _qvalue(q: QTensor, v) -> int:
    """A float bound as a code of ``q``'s quantization (torch's ``quantize_val``)."""
    from .quantized import qrange

    lo, hi = qrange(q._qdtype)
    inv = np.float32(1.0) / np.float32(q._scale)
    code = q._zero_point + int(np.rint(np.float32(v) * inv))
    return min(max(code, lo), hi)


def _clamp(op, q, rest, kwargs):
    """hardtanh / relu6 / clamp: a clamp of the codes to the quantized bounds."""
    q._per_tensor(op.__name__.lower())
    lo, hi = rest[:2]
    xp = _xp(q._data)
    lo = None if lo is None else _qvalue(q, lo)
    hi = None if hi is None else _qvalue(q, hi)
    return q._like(xp.clip(q._data, lo, hi).astype(q._data.dtype, copy=False))


def _float_same(op, q, rest, kwargs):
    """leaky_relu / gelu: torch dequantizes, runs the float op and quantizes with the input's
    parameters."""
    q._per_tensor(op.__name__.lower())
    return q._float_op(lambda t: op.apply(t, *rest, **kwargs))


# torch's fixed output parameters of bounded activations, per dtype: (scale, zero_point)
_FIXED = {
    elementwise.Sigmoid: {quint8: (1 / 256, 0), qint8: (1 / 256, -128)},
    activation_ops.Hardsigmoid: {quint8: (1 / 256, 0), qint8: (1 / 256, -128)},
    elementwise.Tanh: {quint8: (2 / 256, 128), qint8: (2 / 256, 0)},
}


def _float_fixed(op, q, rest, kwargs):
    """sigmoid / hardsigmoid / tanh: the float op on the dequantized values, quantized with
    torch's fixed output parameters for the op's range."""
    q._per_tensor(op.__name__.lower())
    params = _FIXED[op].get(q._qdtype)
    if params is None:
        raise RuntimeError(
            f"quantized {op.__name__.lower()}: expected a quint8 or qint8 input, got {q._qdtype}"
        )
    out = op.apply(q.dequantize(), *rest, **kwargs)
    return quantize_per_tensor(out, params[0], params[1], q._qdtype)


def _relu(op, q, rest, kwargs):
    return q.relu()


def _join(op, args, kwargs):
    """cat / stack: the output takes the first input's parameters; the others are requantized
    to them (torch's quantized cat)."""
    name = op.__name__.lower()
    axis, xs = args[0], args[1:]
    first = next(x for x in xs if isinstance(x, QTensor))
    codes = []
    for x in xs:
        if not isinstance(x, QTensor):
            raise RuntimeError(
                f"{name}: expected all inputs quantized (got a float tensor "
                f"beside quantized ones); quantize it or call .dequantize()"
            )
        if x._axis is not None:
            raise RuntimeError(f"Only per-tensor quantization is supported in '{name}'!")
        if x._qdtype is not first._qdtype:
            raise RuntimeError(
                f"{name}: expected all inputs of dtype {first._qdtype}, got {x._qdtype}"
            )
        if x._scale != first._scale or x._zero_point != first._zero_point:
            x = quantize_per_tensor(x.dequantize(), first._scale, first._zero_point, first._qdtype)
        codes.append(Tensor._wrap(x._data))
    out = op.apply(axis, *codes, **kwargs)
    return first._like(out._data)


_UNARY = {
    shape.Reshape: _codes_op,
    convert.Clone: _codes_op,
    shape.Permute: _codes_op,
    shape.Expand: _codes_op,
    shape.Split: _codes_op,
    shape.Flip: _codes_op,
    indexing.GetItem: _codes_op,
    elementwise.Relu: _relu,
    activation_ops.Hardtanh: _clamp,
    elementwise.Clamp: _clamp,
    pooling.MaxPool: _value_op,
    adaptive_pool.AdaptiveAvgPool: _value_op,
    reduction_sum.Mean: _value_op,
    resample.Resample: _value_op,
    reduction.AmaxAmin: _value_op,
    activation_ops.LeakyRelu: _float_same,
    nn_ops.Gelu: _float_same,
    elementwise.Sigmoid: _float_fixed,
    activation_ops.Hardsigmoid: _float_fixed,
    elementwise.Tanh: _float_fixed,
}
_PER_TENSOR_ONLY = (
    shape.Reshape,
    shape.Permute,
    shape.Expand,
    shape.Flip,
    shape.Split,
    indexing.GetItem,
)
_JOINS = (shape.Cat, shape.Stack)


def quantized_apply(cls, args, kwargs):
    """Run ``cls`` on arguments that include a quantized tensor, or raise naming the op."""
    if cls in _JOINS:
        return _join(cls, args, kwargs)
    handler = _UNARY.get(cls)
    if (
        handler is not None
        and isinstance(args[0], QTensor)
        and not any(isinstance(a, Tensor) for a in args[1:])
    ):
        q = args[0]
        if cls in _PER_TENSOR_ONLY and q._axis is not None:
            raise RuntimeError(
                f"{_op_name(cls)}() on a per-channel quantized tensor is not supported"
            )
        return handler(cls, q, args[1:], kwargs)
    q = next(a for a in args if isinstance(a, QTensor))
    raise RuntimeError(
        f"Could not run '{_op_name(cls)}' with arguments from the 'QuantizedCPU' backend: "
        f"ember runs only shape ops, relu / hardtanh / clamp / leaky_relu / gelu / sigmoid / "
        f"tanh / hardsigmoid, max / average pooling, mean, nearest interpolation and cat / "
        f"stack on quantized tensors (got a {q.dtype} tensor). Call "
        f".dequantize() first, or use the ember.ao.nn.quantized module for this op."
    )


def _op_name(cls) -> str:
    """The public function the user called: the innermost caller inside ember whose name is
    not private (``sigmoid`` rather than the ``Cast`` it starts with); only on the error path."""
    f = sys._getframe(1)
    found = None
    while f is not None:
        path = f.f_code.co_filename
        if not path.startswith(_CORE):
            break
        name = f.f_code.co_name
        if (
            name not in _SKIP
            and not name.startswith("<")
            and (not name.startswith("_") or name.startswith("__"))
        ):
            found = name
            if name == "op" and isinstance(f.f_locals.get("cls"), type):  # ops._unary(Exp)
                found = f.f_locals["cls"].__name__.lower()
            break
        f = f.f_back
    return found.strip("_") if found else cls.__name__.lower()


_function._QTensor = QTensor
_function._quantized_apply = quantized_apply
