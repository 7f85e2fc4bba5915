"""Quantized models as QDQ ONNX: QuantizeLinear / DequantizeLinear around float operators.

A quantized value (an example value that is a ``QTensor``) is an ONNX tensor of its integer
codes (uint8 / int8). Every operator that reads one dequantizes it (``DequantizeLinear``), runs
the float operator and, when its ember result is quantized, quantizes the result with that
result's scale / zero point (``QuantizeLinear``). Weights are int8 initializers read through
``DequantizeLinear`` (per-channel scales via its ``axis``), biases int32 with scale
``input_scale * weight_scale``. This is the layout onnxruntime's graph optimizer turns into its
int8 kernels (QLinearConv, QLinearMatMul / QGemm, MatMulInteger). Dynamic quantized Linear
quantizes its input at run time with ``DynamicQuantizeLinear`` (8-bit, where ember's default
uses 7 bits: see docs/onnx.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import OnnxExporterError
from ._context import Sym
from ._registry import fn, module


def _qtensor_cls():
    from ember.quantized import QTensor

    return QTensor


def is_qsym(v: Any) -> bool:
    """A run-time value holding quantized codes."""
    return isinstance(v, Sym) and isinstance(v.ex, _qtensor_cls())


def _any_q(v: Any) -> bool:
    if is_qsym(v):
        return True
    if isinstance(v, (list, tuple)):
        return any(_any_q(e) for e in v)
    if isinstance(v, dict):
        return any(_any_q(e) for e in v.values())
    return False


def _storage(q) -> np.dtype:
    return np.dtype(q._qdtype.np)


def _qparams(ctx, scale, zero_point, storage) -> tuple[str, str]:
    """Scale (float32) and zero point (``storage`` dtype) constants, scalars or 1-D."""
    s = np.asarray(scale, dtype=np.float32)
    z = np.asarray(zero_point).astype(storage)
    return ctx.const(s), ctx.const(z)


def quantize(ctx, x: Any, like) -> str:
    """``QuantizeLinear`` of a float value to the per-tensor qparams of the QTensor ``like``."""
    if like._axis is not None:
        raise OnnxExporterError(
            "a per-channel quantized activation is not exported (only "
            "weights may be quantized per channel)"
        )
    s, z = _qparams(ctx, like._scale, like._zero_point, _storage(like))
    return ctx.op("QuantizeLinear", [x, s, z])


def dequantize(ctx, x: Sym) -> Sym:
    """``DequantizeLinear`` of a quantized value, as a float Sym."""
    q = x.ex
    s, z = _qparams(ctx, q._scale, q._zero_point, _storage(q))
    kw = {} if q._axis is None else {"axis": int(q._axis)}
    return Sym(ctx.op("DequantizeLinear", [x, s, z], **kw), q.dequantize(), x.dyn)


def _dq_tree(ctx, v: Any) -> Any:
    if is_qsym(v):
        return dequantize(ctx, v)
    if isinstance(v, (list, tuple)):
        return type(v)(_dq_tree(ctx, e) for e in v)
    if isinstance(v, dict):
        return {k: _dq_tree(ctx, e) for k, e in v.items()}
    return v


def _float_ex(v: Any) -> Any:
    if isinstance(v, _qtensor_cls()):
        return v.dequantize()
    if isinstance(v, (list, tuple)):
        return type(v)(_float_ex(e) for e in v)
    return v


def _has_tensor(v: Any) -> bool:
    from ember import Tensor

    if isinstance(v, (list, tuple)):
        return any(_has_tensor(e) for e in v)
    return isinstance(v, Tensor)


def qdq_handler(handler: Callable | None, args: Any, kwargs: Any) -> Callable | None:
    """``handler`` itself, or (when quantized values reach a float handler) a handler that
    dequantizes them, runs ``handler`` and requantizes a quantized result."""
    if (
        handler is None
        or getattr(handler, "_qdq_aware", False)
        or not (_any_q(args) or _any_q(kwargs))
    ):
        return handler

    def wrapped(ctx, *a, **k):
        ex = ctx.ex
        if not _has_tensor(ex):  # x.shape, x.dtype, x.size(0): read from the codes as they are
            return handler(ctx, *a, **k)
        saved = ctx.ex
        ctx.ex = _float_ex(ex)  # float handlers read the float example value
        try:
            out = handler(ctx, *_dq_tree(ctx, a), **_dq_tree(ctx, k))
        finally:
            ctx.ex = saved
        if isinstance(ex, _qtensor_cls()):
            if not isinstance(out, (str, Sym)):
                raise OnnxExporterError("a quantized result that is not one tensor")
            return quantize(ctx, out, ex)
        if isinstance(ex, (list, tuple)) and any(isinstance(e, _qtensor_cls()) for e in ex):
            raise OnnxExporterError(
                "an operator returning several quantized tensors is not exported"
            )
        return out

    return wrapped


def _aware(h: Callable) -> Callable:
    h._qdq_aware = True
    return h


# ---- weights and biases ----------------------------------------------------------------
def _param_name(ctx, m, what: str) -> str:
    path = ctx.module_path if ctx.module_path != "<root>" else type(m).__name__
    return ctx.fresh(f"{path}.{what}")


def _weight(ctx, m, w, transpose: bool = False) -> str:
    """An int8 initializer of ``w``'s codes and its ``DequantizeLinear`` (float weight)."""
    codes = np.asarray(w.cpu().numpy())
    axis = w._axis
    if transpose:  # (out, in) -> (in, out) for MatMul; the channel axis moves with it
        codes = np.ascontiguousarray(codes.T)
        axis = None if axis is None else 1 - int(axis)
    name = ctx.const(codes, name=_param_name(ctx, m, "weight_quantized"))
    ctx.param_names.append(name)
    s, z = _qparams(ctx, w._scale, w._zero_point, codes.dtype)
    kw = {} if axis is None else {"axis": int(axis)}
    return ctx.op("DequantizeLinear", [name, s, z], **kw)


def _bias(ctx, m, b, x_scale: float, w) -> str | None:
    """The float bias as int32 codes with scale ``x_scale * w_scale`` (per channel)."""
    if b is None:
        return None
    bf = np.asarray(b.detach().cpu().numpy(), dtype=np.float64)
    ws = np.asarray(w._scale, dtype=np.float32)
    scale = (np.float32(x_scale) * ws).astype(np.float32)
    scale = np.broadcast_to(scale, bf.shape) if scale.ndim else scale
    lim = np.iinfo(np.int32)
    codes = np.clip(np.rint(bf / scale.astype(np.float64)), lim.min, lim.max).astype(np.int32)
    name = ctx.const(codes, name=_param_name(ctx, m, "bias_quantized"))
    ctx.param_names.append(name)
    kw = {} if scale.ndim == 0 else {"axis": 0}
    return ctx.op("DequantizeLinear", [name, ctx.const(scale)], **kw)


def _check_input(x, who: str):
    if not is_qsym(x):
        raise OnnxExporterError(
            f"{who} expects a quantized input (is a QuantStub missing before it?)"
        )
    if x.ex._axis is not None:
        raise OnnxExporterError(f"{who} expects a per-tensor quantized input")


# ---- modules ---------------------------------------------------------------------------
def _quantize_module(ctx, m, x):
    if is_qsym(x):
        raise OnnxExporterError("Quantize got an already quantized input")
    return quantize(ctx, x, ctx.ex)


def _dequantize_module(ctx, m, x):
    return dequantize(ctx, x) if is_qsym(x) else x


def _linear_module(ctx, m, x):
    _check_input(x, type(m).__name__)
    xf = dequantize(ctx, x)
    w = m.weight()
    b = _bias(ctx, m, m.bias(), float(x.ex._scale), w)
    if x.rank == 2:
        y = ctx.op("Gemm", [xf, _weight(ctx, m, w), b], transB=1)
    else:
        y = ctx.op("MatMul", [xf, _weight(ctx, m, w, transpose=True)])
        if b is not None:
            y = ctx.op("Add", [y, b])
    if m._RELU:
        y = ctx.op("Relu", [y])
    return quantize(ctx, y, ctx.ex)


def _conv_module(ctx, m, x):
    _check_input(x, m._get_name())
    xf = dequantize(ctx, x)
    w = m.weight()
    b = _bias(ctx, m, m.bias(), float(x.ex._scale), w)
    y = ctx.op(
        "Conv",
        [xf, _weight(ctx, m, w), b],
        kernel_shape=list(m.kernel_size),
        strides=list(m.stride),
        pads=list(m.padding) * 2,
        dilations=list(m.dilation),
        group=int(m.groups),
    )
    if m._RELU:
        y = ctx.op("Relu", [y])
    return quantize(ctx, y, ctx.ex)


def _dynamic_qparams(ctx, x, qmax: int):
    """Run-time (codes, scale, zero point) of ``x`` over ``[min(x, 0), max(x, 0)]`` mapped to
    ``[0, qmax]`` (ember's / torch's dynamic rule; 6.1e-5 is its smallest scale)."""
    zero = ctx.const(np.asarray(0.0, np.float32))
    lo = ctx.op("Min", [ctx.op("ReduceMin", [x], keepdims=0), zero])
    hi = ctx.op("Max", [ctx.op("ReduceMax", [x], keepdims=0), zero])
    scale = ctx.op("Div", [ctx.op("Sub", [hi, lo]), ctx.const(np.asarray(qmax, np.float32))])
    scale = ctx.op("Max", [scale, ctx.const(np.asarray(6.1e-5, np.float32))])
    zp = ctx.op(
        "Clip",
        [
            ctx.op("Round", [ctx.op("Div", [ctx.op("Neg", [lo]), scale])]),
            zero,
            ctx.const(np.asarray(qmax, np.float32)),
        ],
    )
    zp = ctx.cast(zp, np.uint8)
    return ctx.op("QuantizeLinear", [x, scale, zp]), scale, zp


def _dynamic_linear_module(ctx, m, x):
    if is_qsym(x):
        raise OnnxExporterError("DynamicQuantizedLinear expects a float input")
    w = m.weight()
    codes = np.ascontiguousarray(np.asarray(w.cpu().numpy()).T)  # (in, out)
    wzp = np.asarray(w._zero_point)
    if m.reduce_range:
        # 7-bit activations as ember computes them; int8 weights (uint8 x int8 products
        # summed in pairs stay inside int16 in onnxruntime's x86 kernels)
        q, s, z = _dynamic_qparams(ctx, x, 127)
    else:
        # 8-bit activations: onnxruntime's uint8 x int8 x86 kernel could saturate, so the
        # weights are shifted to uint8 (uint8 x uint8 has no saturation)
        q, s, z = ctx.op("DynamicQuantizeLinear", [x], n_out=3)
        if codes.dtype == np.int8:
            codes = (codes.astype(np.int16) + 128).astype(np.uint8)
            wzp = wzp + 128
    wname = ctx.const(codes, name=_param_name(ctx, m, "weight_quantized"))
    ctx.param_names.append(wname)
    acc = ctx.op("MatMulInteger", [q, wname, z, ctx.const(wzp.astype(codes.dtype))])
    scale = ctx.op("Mul", [s, ctx.const(np.asarray(w._scale, dtype=np.float32))])
    y = ctx.op("Mul", [ctx.cast(acc, np.float32), scale])
    b = m.bias()
    if b is not None:
        y = ctx.op("Add", [y, ctx.const(np.asarray(b.detach().cpu().numpy(), np.float32))])
    return y


def _activation_module(ctx, m, x):
    """Quantized ReLU6 / Hardswish / LeakyReLU / Sigmoid: the float op between DQ and Q."""
    _check_input(x, m._get_name())
    xf = dequantize(ctx, x)
    kind = m._get_name().removeprefix("Quantized")
    if kind == "ReLU6":
        y = ctx.op(
            "Clip",
            [xf, ctx.const(np.asarray(0.0, np.float32)), ctx.const(np.asarray(6.0, np.float32))],
        )
    elif kind == "Hardswish":
        y = ctx.op("HardSwish", [xf])
    elif kind == "LeakyReLU":
        y = ctx.op("LeakyRelu", [xf], alpha=float(m.negative_slope))
    else:
        y = ctx.op("Sigmoid", [xf])
    return quantize(ctx, y, ctx.ex)


# ---- functions / methods (QFunctional's body, explicit quantize / dequantize calls) -----
@fn("dequantize")
@_aware
def _dequantize_fn(ctx, x, *rest):
    if isinstance(x, (list, tuple)):
        return [dequantize(ctx, e) if is_qsym(e) else e for e in x]
    return dequantize(ctx, x) if is_qsym(x) else x


@fn("quantize_per_tensor")
@_aware
def _quantize_per_tensor_fn(ctx, x, scale=None, zero_point=None, dtype=None):
    if any(isinstance(v, Sym) for v in (scale, zero_point)):
        raise OnnxExporterError(
            "quantize_per_tensor with a run-time scale or zero point is not exported"
        )
    if is_qsym(x):
        raise OnnxExporterError("quantize_per_tensor of an already quantized tensor")
    return quantize(ctx, x, ctx.ex)


def _register() -> None:
    import ember.ao.nn.intrinsic.quantized as nniq
    import ember.ao.nn.quantized as nnq
    import ember.ao.nn.quantized.dynamic as nnqd

    module(nnq.Quantize)(_aware(_quantize_module))
    module(nnq.DeQuantize)(_aware(_dequantize_module))
    module(nnq.Linear, nniq.LinearReLU)(_aware(_linear_module))
    module(nnq.Conv1d, nnq.Conv2d, nniq.ConvReLU1d, nniq.ConvReLU2d)(_aware(_conv_module))
    module(nnqd.Linear)(_aware(_dynamic_linear_module))
    module(nnq.ReLU6, nnq.Hardswish, nnq.LeakyReLU, nnq.Sigmoid)(_aware(_activation_module))
    module(nnq.Dropout)(_aware(lambda ctx, m, x: x))
    module(nnqd.LSTM, nnqd.GRU)(_aware(_unsupported_module))


def _unsupported_module(ctx, m, *args, **kwargs):
    raise OnnxExporterError(
        f"{m._get_name()} (a dynamic quantized recurrent layer) is not "
        "exported to ONNX; export the float model, or quantize only its "
        "Linear layers"
    )


def patch_tracer(patcher) -> None:
    """Record ``quantize_per_tensor`` calls (QFunctional's requantization) as graph nodes."""
    import ember
    import ember.quantized as q
    from ember.fx._patch import tracing_wrapper

    w = tracing_wrapper(q.quantize_per_tensor)
    patcher.set_attr(q, "quantize_per_tensor", w)
    patcher.set_attr(ember, "quantize_per_tensor", w)


_register()
