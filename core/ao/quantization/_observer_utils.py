"""The array arithmetic behind the observers in ``observer.py`` (no modules, no state).

``_qmin_qmax`` is torch's ``calculate_qmin_qmax``; ``_affine_qparams`` is the body of torch's
``UniformQuantizationObserverBase._calculate_qparams`` (float32 arithmetic, round half to even
for zero points). The observer classes stay in ``observer.py`` so pickled models and
``add_safe_globals`` entries keep naming them by their old module path.
"""

from __future__ import annotations

import numpy as np

from ... import quantized as _q
from ...tensor import Tensor

_EPS = float(np.finfo(np.float32).eps)
_f32 = np.float32


def _np(t) -> np.ndarray:
    d = t._data if isinstance(t, Tensor) else t
    return d if type(d) is np.ndarray else d.get()


def _qmin_qmax(quant_min, quant_max, dtype, reduce_range: bool) -> tuple[int, int]:
    """torch's ``calculate_qmin_qmax``: a custom range (checked), else the dtype's 8-bit one."""
    if quant_min is not None and quant_max is not None:
        if not quant_min <= 0 <= quant_max:
            raise ValueError(
                f"Used-specified quantization range must include 0 (got [{quant_min}, {quant_max}])"
            )
        if quant_min >= quant_max:
            raise ValueError(f"qmin must be strictly less than qmax (got {quant_min}, {quant_max})")
        limit = 2**32 if dtype is _q.qint32 else 256
        if not 0 < quant_max - quant_min + 1 <= limit:
            raise ValueError(
                f"quantization range should be positive and not exceed the maximum "
                f"bit range (={limit})"
            )
        return (quant_min // 2, quant_max // 2) if reduce_range else (quant_min, quant_max)
    if dtype is _q.qint8:
        return (-64, 63) if reduce_range else (-128, 127)
    if dtype is _q.quint8:
        return (0, 127) if reduce_range else (0, 255)
    if dtype is _q.qint32:
        return -(2**31), 2**31 - 1
    if dtype is _q.quint4x2:
        return 0, 15
    return 0, 255


def _affine_qparams(
    min_val: np.ndarray,
    max_val: np.ndarray,
    qscheme,
    dtype,
    qmin: int,
    qmax: int,
    eps: np.float32,
    customized_range: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale and zero point arrays for checked float32 ``min_val <= max_val``."""
    zeros = np.zeros_like(min_val)
    min_neg = np.minimum(min_val, zeros)
    max_pos = np.maximum(max_val, zeros)
    zero_point = np.zeros(min_neg.shape, np.int64)
    if qscheme in (_q.per_tensor_symmetric, _q.per_channel_symmetric):
        max_pos = np.maximum(-min_neg, max_pos)
        scale = np.maximum(max_pos / _f32((qmax - qmin) / 2), eps)
        if dtype is _q.quint8:
            zero_point[...] = (qmin + qmax) // 2 if customized_range else 128
    elif qscheme is _q.per_channel_affine_float_qparams:
        scale = (max_val - min_val) / _f32(qmax - qmin)
        scale = np.where(scale > eps, scale, _f32(1.0))
        zero_point = -1 * min_val / scale
    else:
        scale = np.maximum((max_pos - min_neg) / _f32(qmax - qmin), eps)
        zero_point = qmin - np.rint(min_neg / scale).astype(np.int64)
        zero_point = np.clip(zero_point, qmin, qmax)
    scale = np.asarray(scale, _f32).reshape(-1) if scale.ndim == 0 else scale.astype(_f32)
    zero_point = np.asarray(zero_point).reshape(-1) if np.ndim(zero_point) == 0 else zero_point
    return scale, zero_point


def _channel_minmax(x: np.ndarray, ch_axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Minimum and maximum of each slice of ``x`` along ``ch_axis``."""
    y = np.moveaxis(x, ch_axis, 0).reshape(x.shape[ch_axis], -1)
    return y.min(axis=1), y.max(axis=1)


def _moving_average(lo, hi, cur_lo, cur_hi, averaging_constant: float, fresh: bool):
    """One exponential-moving-average step of (min, max); ``fresh`` takes the batch as is."""
    if fresh:
        return cur_lo, cur_hi
    c = _f32(averaging_constant)
    return lo + c * (cur_lo - lo), hi + c * (cur_hi - hi)


def _check_uniform_args(qscheme, dtype, supported: tuple) -> None:
    """``UniformQuantizationObserverBase``'s argument checks (torch's wording)."""
    if qscheme not in supported:
        raise AssertionError(
            f"Default Observer only works for per_tensor_affine, "
            f"per_tensor_symmetric, per_channel_affine, "
            f"per_channel_symmetric and per_channel_float_qparams "
            f"quantization scheme; got {qscheme}"
        )
    if dtype not in (_q.qint8, _q.quint8, _q.qint32, _q.quint4x2):
        raise AssertionError(
            f"Default Observer only works for qint8, quint8, qint32 and "
            f"quint4x2 data types; got {dtype}"
        )


def _check_minmax_qscheme(qscheme, per_channel: bool) -> None:
    """``MinMaxObserver`` takes per-tensor schemes only (unless it is a per-channel one)."""
    if qscheme in (_q.per_channel_affine, _q.per_channel_symmetric) and not per_channel:
        raise NotImplementedError(
            "MinMaxObserver's qscheme only support "
            "torch.per_tensor_symmetric and torch.per_tensor_affine."
        )


def _check_per_channel_qscheme(qscheme) -> None:
    """``PerChannelMinMaxObserver`` takes the three per-channel schemes only."""
    if qscheme not in (
        _q.per_channel_affine,
        _q.per_channel_symmetric,
        _q.per_channel_affine_float_qparams,
    ):
        raise NotImplementedError(
            "PerChannelMinMaxObserver's qscheme only support "
            "per_channel_symmetric, per_channel_affine and "
            "per_channel_affine_float_qparams."
        )
