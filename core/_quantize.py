"""Quantizing float values into a :class:`~ember.quantized.QTensor` (PyTorch's functions).

``quantize_per_tensor`` / ``quantize_per_channel`` / ``quantize_per_tensor_dynamic``,
``choose_qparams`` (PyTorch's C++ ``ChooseQuantizationParams``), ``dequantize`` and the
``_make_per_*_quantized_tensor`` wrappers of raw codes, with the rounding kernel they share. The
quantized dtypes, schemes and ``QTensor`` live in ``core/quantized.py``, which re-exports every
name here (``ember.quantized.quantize_per_tensor`` is the public path).
"""

from __future__ import annotations

import numpy as np

from .tensor import Tensor


def _array(x):
    if isinstance(x, QTensor):
        raise RuntimeError("quantize: the input is already quantized")
    if isinstance(x, Tensor):
        return x._data
    return np.asarray(x, dtype=np.float32)


def _quantize_codes(xp, x, inv, zp, lo, hi, storage):
    """PyTorch's rounding: fl32(x * inv + zp) with one rounding (an FMA), clamp, half-to-even.
    float64 holds the product of two float32 exactly, so one cast to float32 is the FMA."""
    if (
        xp is np
        and type(inv) is float
        and type(zp) is int
        and x.dtype == np.float32
        and storage in (np.uint8, np.int8)
        and x.size
    ):
        kernel = _compiled_quantize()
        if kernel is not None:  # one compiled pass for the four below (same codes)
            out = np.empty(x.shape, storage)
            kernel(np.ascontiguousarray(x).reshape(-1), inv, zp, lo, hi, out.reshape(-1))
            return out
    f = (x.astype(xp.float64) * inv + zp).astype(xp.float32)
    return xp.rint(xp.clip(f, lo, hi)).astype(storage)


_NUMBA_INT: list = []


def _compiled_quantize():
    """``ao.nn.quantized._numba_int.quantize_codes`` when numba is installed and on, else None
    (imported at the first quantization: importing it imports numba)."""
    if not _NUMBA_INT:
        from .ao.nn.quantized import _numba_int

        _NUMBA_INT.append(_numba_int)
    nbi = _NUMBA_INT[0]
    return nbi.quantize_codes if nbi.enabled() else None


def quantize_per_tensor(input, scale, zero_point, dtype) -> QTensor:
    """Quantize a float tensor with one scale and zero point (``torch.quantize_per_tensor``).

    ``input`` may also be a list of tensors (then scale / zero_point are lists or tensors).
    """
    if isinstance(input, (list, tuple)):
        sc = scale.tolist() if isinstance(scale, Tensor) else list(scale)
        zp = zero_point.tolist() if isinstance(zero_point, Tensor) else list(zero_point)
        return [quantize_per_tensor(t, s, z, dtype) for t, s, z in zip(input, sc, zp)]
    d = _check_qdtype(dtype, "quantize_per_tensor")
    x = _array(input)
    if x.dtype.kind != "f":
        raise RuntimeError(f"quantize_per_tensor: expected a floating-point input, got {x.dtype}")
    scale = float(scale.item() if isinstance(scale, Tensor) else scale)
    zero_point = int(zero_point.item() if isinstance(zero_point, Tensor) else zero_point)
    if not scale > 0:
        raise RuntimeError(f"quantize_per_tensor: scale must be positive, got {scale}")
    lo, hi = _RANGES[d]
    xp = _xp(x)
    inv = float(np.float32(1.0) / np.float32(scale))
    codes = _quantize_codes(xp, x.astype(xp.float32, copy=False), inv, zero_point, lo, hi, d.np)
    return QTensor._make(codes, d, per_tensor_affine, scale, zero_point)


def quantize_per_channel(input, scales, zero_points, axis: int, dtype) -> QTensor:
    """Quantize with one scale / zero point per slice along ``axis``
    (``torch.quantize_per_channel``)."""
    d = _check_qdtype(dtype, "quantize_per_channel")
    x = _array(input)
    xp = _xp(x)
    sc = np.asarray(scales._data if isinstance(scales, Tensor) else scales, dtype=np.float64)
    zp = np.asarray(zero_points._data if isinstance(zero_points, Tensor) else zero_points)
    if type(sc) is not np.ndarray:  # cupy parameters: bring the small vectors to the host
        sc, zp = sc.get(), zp.get()
    if not 0 <= axis < max(x.ndim, 1) and not -x.ndim <= axis < 0:
        raise RuntimeError(
            f"quantize_per_channel: axis {axis} is out of range for a {x.ndim}-d input"
        )
    axis = axis % x.ndim
    n = x.shape[axis]
    if sc.shape != (n,) or zp.shape != (n,):
        raise RuntimeError(
            f"quantize_per_channel: expected {n} scales and zero points (the size "
            f"of dim {axis}), got {sc.shape} and {zp.shape}"
        )
    if (sc <= 0).any():
        raise RuntimeError("quantize_per_channel: scales must be positive")
    lo, hi = _RANGES[d]
    shape = [1] * x.ndim
    shape[axis] = n
    inv = (np.float32(1.0) / sc.astype(np.float32)).astype(np.float64).reshape(shape)
    zpf = zp.astype(np.float64).reshape(shape)
    codes = _quantize_codes(
        xp, x.astype(xp.float32, copy=False), xp.asarray(inv), xp.asarray(zpf), lo, hi, d.np
    )
    if zp.dtype.kind == "f":  # float zero points: torch's float-qparams scheme (embeddings)
        return QTensor._make(
            codes, d, per_channel_affine_float_qparams, sc, zp.astype(np.float64), axis
        )
    return QTensor._make(
        codes, d, per_channel_affine, sc.astype(np.float64), zp.astype(np.int64), axis
    )


def quantize_per_tensor_dynamic(input, dtype, reduce_range: bool) -> QTensor:
    """Quantize with a scale and zero point chosen from the input's own min / max
    (``torch.quantize_per_tensor_dynamic``; the range always includes 0)."""
    d = _check_qdtype(dtype, "quantize_per_tensor_dynamic")
    if d not in (qint8, quint8):
        raise RuntimeError(f"quantize_per_tensor_dynamic: dtype must be qint8 or quint8, got {d}")
    x = _array(input)
    lo, hi = _RANGES[d]
    if reduce_range:  # 7-bit range, for engines whose int8 x int8 sums could overflow int16
        lo, hi = (0, 127) if d is quint8 else (-64, 63)
    scale, zp = choose_qparams(
        float(x.min()) if x.size else 0.0, float(x.max()) if x.size else 0.0, lo, hi
    )
    return quantize_per_tensor(Tensor._wrap(x), scale, zp, d)


def choose_qparams(
    xmin: float, xmax: float, qmin: int, qmax: int, preserve_sparsity: bool = False
) -> tuple[float, int]:
    """PyTorch's C++ ``ChooseQuantizationParams`` (dynamic quantization and the fused
    observer + fake-quant op): an affine scale over [min(xmin, 0), max(xmax, 0)], tiny scales
    raised to 6.1e-5, the zero point nudged into [qmin, qmax]; ``preserve_sparsity`` makes the
    range symmetric first."""
    xmin, xmax = min(float(np.float32(xmin)), 0.0), max(float(np.float32(xmax)), 0.0)
    if preserve_sparsity and xmin < 0 < xmax:
        sym_min = -((qmax - qmin) // 2 + 1)
        sym_max = (qmax - qmin) // 2
        m = max(abs(xmin / sym_min), abs(xmax / sym_max))
        xmin, xmax = m * sym_min, m * sym_max
    scale = float((np.float64(xmax) - np.float64(xmin)) / (qmax - qmin))
    if float(np.float32(scale)) == 0.0 or np.isinf(np.float32(1.0) / np.float32(scale)):
        scale = 0.1
    small = 6.1e-5
    if scale < small:
        amp = small / scale
        scale = small
        if xmin == 0.0:
            xmax = small * (qmax - qmin)
        elif xmax == 0.0:
            xmin = -small * (qmax - qmin)
        else:
            xmin, xmax = float(np.float32(xmin * amp)), float(np.float32(xmax * amp))
    zp_min = qmin - xmin / scale
    zp_max = qmax - xmax / scale
    err_min = abs(qmin) - abs(xmin / scale)
    err_max = abs(qmax) - abs(xmax / scale)
    init_zp = zp_min if err_min < err_max else zp_max
    if preserve_sparsity and xmin < 0 < xmax:  # symmetric: the middle of the range
        init_zp = (qmin + qmax) / 2
    if init_zp < qmin:
        zp = qmin
    elif init_zp > qmax:
        zp = qmax
    else:
        zp = int(np.rint(init_zp))
    return scale, int(zp)


def dequantize(tensor):
    """``ember.dequantize(t)``: float32 values of a quantized tensor (or of each in a list)."""
    if isinstance(tensor, (list, tuple)):
        return [dequantize(t) for t in tensor]
    if not isinstance(tensor, QTensor):
        return tensor.float() if isinstance(tensor, Tensor) else tensor
    return tensor.dequantize()


def _make_per_tensor_quantized_tensor(input, scale: float, zero_point: int) -> QTensor:
    """Wrap integer codes (uint8 / int8 / int32) as a per-tensor quantized tensor."""
    qd = {np.dtype(np.uint8): quint8, np.dtype(np.int8): qint8, np.dtype(np.int32): qint32}.get(
        input._data.dtype
    )
    if qd is None:
        raise RuntimeError(
            f"_make_per_tensor_quantized_tensor: expected uint8, int8 or int32 "
            f"codes, got {input.dtype}"
        )
    return QTensor._make(input._data.copy(), qd, per_tensor_affine, float(scale), int(zero_point))


def _make_per_channel_quantized_tensor(input, scale, zero_point, axis: int) -> QTensor:
    """Wrap integer codes as a per-channel quantized tensor."""
    qd = {np.dtype(np.uint8): quint8, np.dtype(np.int8): qint8, np.dtype(np.int32): qint32}.get(
        input._data.dtype
    )
    if qd is None:
        raise RuntimeError(
            f"_make_per_channel_quantized_tensor: expected uint8, int8 or int32 "
            f"codes, got {input.dtype}"
        )
    sc = np.asarray(scale._data if isinstance(scale, Tensor) else scale, dtype=np.float64)
    zp = np.asarray(
        zero_point._data if isinstance(zero_point, Tensor) else zero_point, dtype=np.int64
    )
    return QTensor._make(
        input._data.copy(), qd, per_channel_affine, sc, zp, axis % input._data.ndim
    )


# Imported last, after the functions above exist: ``core/quantized.py`` imports this module at
# its end, so either module may be imported first without meeting a half-initialised other.
from .quantized import (  # noqa: E402
    _RANGES,
    QTensor,
    _check_qdtype,
    _xp,
    per_channel_affine,
    per_channel_affine_float_qparams,
    per_tensor_affine,
    qint8,
    qint32,
    quint8,
)
