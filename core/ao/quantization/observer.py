"""Observers: modules that watch tensors go by and choose a scale and zero point for them.

The statistics and ``calculate_qparams`` follow ``torch.ao.quantization.observer`` (float32
arithmetic, round half to even for zero points); tests compare the chosen qparams with torch's.
"""

from __future__ import annotations

import warnings
from functools import partial

import numpy as np

from ... import quantized as _q
from ...nn.module import Module
from ...tensor import Tensor
from ._observer_utils import (  # noqa: F401  (_EPS, _f32, _np, _qmin_qmax re-exported: histogram uses them)
    _EPS,
    _affine_qparams,
    _channel_minmax,
    _check_minmax_qscheme,
    _check_per_channel_qscheme,
    _check_uniform_args,
    _f32,
    _moving_average,
    _np,
    _qmin_qmax,
)

__all__ = [
    "ObserverBase",
    "UniformQuantizationObserverBase",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PerChannelMinMaxObserver",
    "MovingAveragePerChannelMinMaxObserver",
    "HistogramObserver",
    "PlaceholderObserver",
    "NoopObserver",
    "default_observer",
    "default_weight_observer",
    "default_per_channel_weight_observer",
    "default_histogram_observer",
    "default_dynamic_quant_observer",
    "default_placeholder_observer",
    "default_float_qparams_observer",
    "weight_observer_range_neg_127_to_127",
    "per_channel_weight_observer_range_neg_127_to_127",
]


class _PartialWrapper:
    """What ``Observer.with_args(...)`` returns: call it to build the observer (torch's)."""

    def __init__(self, p):
        self.p = p

    def __call__(self, *args, **kwargs):
        return self.p(*args, **kwargs)

    def __repr__(self) -> str:
        return self.p.__repr__()

    def with_args(self, **kwargs):
        return _PartialWrapper(partial(self.p, **kwargs))

    with_callable_args = with_args


def _with_args(cls_or_self, **kwargs):
    return _PartialWrapper(partial(cls_or_self, **kwargs))


class ObserverBase(Module):
    """Base of observers: ``forward`` records statistics, ``calculate_qparams`` uses them."""

    def __init__(self, dtype=_q.quint8, is_dynamic: bool = False):
        super().__init__()
        self.dtype = dtype
        self.is_dynamic = is_dynamic

    def calculate_qparams(self, **kwargs):
        raise NotImplementedError

    with_args = classmethod(_with_args)
    with_callable_args = classmethod(_with_args)


class UniformQuantizationObserverBase(ObserverBase):
    """Observers with an affine / symmetric uniform grid (scale + zero point)."""

    _SUPPORTED = (
        _q.per_tensor_affine,
        _q.per_tensor_symmetric,
        _q.per_channel_affine,
        _q.per_channel_symmetric,
        _q.per_channel_affine_float_qparams,
    )

    def __init__(
        self,
        dtype=_q.quint8,
        qscheme=_q.per_tensor_affine,
        reduce_range=False,
        quant_min=None,
        quant_max=None,
        factory_kwargs=None,
        eps=_EPS,
        is_dynamic=False,
        **kwargs,
    ):
        super().__init__(dtype=dtype, is_dynamic=is_dynamic)
        _check_uniform_args(qscheme, dtype, self._SUPPORTED)
        self.qscheme = qscheme
        if reduce_range:
            warnings.warn(
                "Please use quant_min and quant_max to specify the range for "
                "observers. reduce_range will be deprecated in a future release.",
                stacklevel=2,
            )
        self.reduce_range = reduce_range
        self.register_buffer("eps", Tensor(np.array([eps], _f32)))  # a buffer, as torch's
        self.has_customized_qrange = quant_min is not None and quant_max is not None
        self.quant_min, self.quant_max = _qmin_qmax(quant_min, quant_max, dtype, reduce_range)

    def _calculate_qparams(self, min_val: np.ndarray, max_val: np.ndarray):
        """Scale / zero point for float32 ``min_val`` / ``max_val`` (scalars or per channel)."""
        min_val = np.asarray(min_val, dtype=_f32)
        max_val = np.asarray(max_val, dtype=_f32)
        if (np.isinf(min_val) & np.isinf(max_val)).any():
            warnings.warn(
                "must run observer before calling calculate_qparams. Returning default values.",
                stacklevel=3,
            )
            return Tensor(np.array([1.0], _f32)), Tensor._wrap(np.array([0], np.int64))
        if (min_val > max_val).any():
            raise AssertionError(f"min {min_val} should be less than max {max_val}")
        eps = _f32(self.eps._data.reshape(-1)[0])
        scale, zero_point = _affine_qparams(
            min_val,
            max_val,
            self.qscheme,
            self.dtype,
            self.quant_min,
            self.quant_max,
            eps,
            self.has_customized_qrange,
        )
        return Tensor._wrap(scale), Tensor._wrap(zero_point)

    def reset_min_max_vals(self):
        raise NotImplementedError("Cannot reset min/max values in the given observer.")

    def _set_buffer(self, name: str, value) -> None:
        getattr(self, name)._data = np.asarray(value, dtype=_f32)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # min_val / max_val change shape once data is seen (per channel): take the saved shape
        for name in ("min_val", "max_val"):
            key = prefix + name
            if key in state_dict and hasattr(self, name):
                getattr(self, name)._data = np.array(_np(state_dict[key]), dtype=_f32)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class MinMaxObserver(UniformQuantizationObserverBase):
    """Running minimum and maximum of everything seen."""

    def __init__(
        self,
        dtype=_q.quint8,
        qscheme=_q.per_tensor_affine,
        reduce_range=False,
        quant_min=None,
        quant_max=None,
        factory_kwargs=None,
        eps=_EPS,
        is_dynamic=False,
        **kwargs,
    ):
        _check_minmax_qscheme(qscheme, isinstance(self, PerChannelMinMaxObserver))
        super().__init__(
            dtype=dtype,
            qscheme=qscheme,
            reduce_range=reduce_range,
            quant_min=quant_min,
            quant_max=quant_max,
            eps=eps,
            is_dynamic=is_dynamic,
            **kwargs,
        )
        self.register_buffer("min_val", Tensor(np.array(np.inf, _f32)))
        self.register_buffer("max_val", Tensor(np.array(-np.inf, _f32)))

    def forward(self, x_orig: Tensor) -> Tensor:
        if x_orig.numel() == 0:
            return x_orig
        x = _np(x_orig).astype(_f32, copy=False)
        self._set_buffer("min_val", np.minimum(_np(self.min_val), x.min()))
        self._set_buffer("max_val", np.maximum(_np(self.max_val), x.max()))
        return x_orig

    def calculate_qparams(self):
        return self._calculate_qparams(_np(self.min_val), _np(self.max_val))

    def extra_repr(self) -> str:
        return f"min_val={_np(self.min_val)}, max_val={_np(self.max_val)}"

    def reset_min_max_vals(self):
        self._set_buffer("min_val", np.inf)
        self._set_buffer("max_val", -np.inf)


class MovingAverageMinMaxObserver(MinMaxObserver):
    """Exponential moving average of each batch's min and max."""

    def __init__(
        self,
        averaging_constant=0.01,
        dtype=_q.quint8,
        qscheme=_q.per_tensor_affine,
        reduce_range=False,
        quant_min=None,
        quant_max=None,
        eps=_EPS,
        is_dynamic=False,
        **kwargs,
    ):
        self.averaging_constant = averaging_constant
        super().__init__(
            dtype=dtype,
            qscheme=qscheme,
            reduce_range=reduce_range,
            quant_min=quant_min,
            quant_max=quant_max,
            eps=eps,
            is_dynamic=is_dynamic,
            **kwargs,
        )

    def forward(self, x_orig: Tensor) -> Tensor:
        if x_orig.numel() == 0:
            return x_orig
        x = _np(x_orig).astype(_f32, copy=False)
        lo, hi = _np(self.min_val), _np(self.max_val)
        fresh = bool(np.isinf(lo) and np.isinf(hi))
        lo, hi = _moving_average(lo, hi, x.min(), x.max(), self.averaging_constant, fresh)
        self._set_buffer("min_val", lo)
        self._set_buffer("max_val", hi)
        return x_orig


class PerChannelMinMaxObserver(UniformQuantizationObserverBase):
    """Running min / max per slice along ``ch_axis`` (for per-channel weight quantization)."""

    def __init__(
        self,
        ch_axis=0,
        dtype=_q.quint8,
        qscheme=_q.per_channel_affine,
        reduce_range=False,
        quant_min=None,
        quant_max=None,
        factory_kwargs=None,
        eps=_EPS,
        is_dynamic=False,
        **kwargs,
    ):
        _check_per_channel_qscheme(qscheme)
        super().__init__(
            dtype=dtype,
            qscheme=qscheme,
            reduce_range=reduce_range,
            quant_min=quant_min,
            quant_max=quant_max,
            eps=eps,
            is_dynamic=is_dynamic,
            **kwargs,
        )
        self.ch_axis = ch_axis
        self.register_buffer("min_val", Tensor(np.zeros((0,), _f32)))
        self.register_buffer("max_val", Tensor(np.zeros((0,), _f32)))

    def _channel_minmax(self, x: np.ndarray):
        return _channel_minmax(x, self.ch_axis)

    def forward(self, x_orig: Tensor) -> Tensor:
        if x_orig.numel() == 0:
            return x_orig
        x = _np(x_orig).astype(_f32, copy=False)
        cur_lo, cur_hi = self._channel_minmax(x)
        lo, hi = _np(self.min_val), _np(self.max_val)
        if lo.size == 0 or hi.size == 0:
            lo, hi = cur_lo, cur_hi
        else:
            lo, hi = np.minimum(cur_lo, lo), np.maximum(cur_hi, hi)
        self._set_buffer("min_val", lo)
        self._set_buffer("max_val", hi)
        return x_orig

    def calculate_qparams(self):
        lo, hi = _np(self.min_val), _np(self.max_val)
        if lo.size == 0:
            warnings.warn(
                "must run observer before calling calculate_qparams. Returning default values.",
                stacklevel=2,
            )
            return Tensor(np.array([1.0], _f32)), Tensor._wrap(np.array([0], np.int64))
        return self._calculate_qparams(lo, hi)

    def extra_repr(self) -> str:
        return f"min_val={_np(self.min_val)}, max_val={_np(self.max_val)}"

    def reset_min_max_vals(self):
        self._set_buffer("min_val", np.zeros((0,)))
        self._set_buffer("max_val", np.zeros((0,)))


class MovingAveragePerChannelMinMaxObserver(PerChannelMinMaxObserver):
    """Per-channel exponential moving average of min and max."""

    def __init__(
        self,
        averaging_constant=0.01,
        ch_axis=0,
        dtype=_q.quint8,
        qscheme=_q.per_channel_affine,
        reduce_range=False,
        quant_min=None,
        quant_max=None,
        eps=_EPS,
        is_dynamic=False,
        **kwargs,
    ):
        super().__init__(
            ch_axis=ch_axis,
            dtype=dtype,
            qscheme=qscheme,
            reduce_range=reduce_range,
            quant_min=quant_min,
            quant_max=quant_max,
            eps=eps,
            is_dynamic=is_dynamic,
            **kwargs,
        )
        self.averaging_constant = averaging_constant

    def forward(self, x_orig: Tensor) -> Tensor:
        if x_orig.numel() == 0:
            return x_orig
        x = _np(x_orig).astype(_f32, copy=False)
        cur_lo, cur_hi = self._channel_minmax(x)
        lo, hi = _np(self.min_val), _np(self.max_val)
        fresh = lo.size == 0 or hi.size == 0
        lo, hi = _moving_average(lo, hi, cur_lo, cur_hi, self.averaging_constant, fresh)
        self._set_buffer("min_val", lo)
        self._set_buffer("max_val", hi)
        return x_orig


class PlaceholderObserver(ObserverBase):
    """Records nothing; carries the dtype (and optional fixed qparams) for ``convert``."""

    def __init__(
        self,
        dtype=None,
        custom_op_name="",
        compute_dtype=None,
        quant_min=None,
        quant_max=None,
        qscheme=None,
        eps=None,
        is_dynamic=False,
    ):
        from ... import float32

        super().__init__(dtype=float32 if dtype is None else dtype, is_dynamic=is_dynamic)
        if qscheme is None:
            qscheme = _q.per_tensor_affine
        self.qscheme = qscheme
        self.quant_min, self.quant_max, self.eps = quant_min, quant_max, eps
        self.custom_op = custom_op_name

    def forward(self, x: Tensor) -> Tensor:
        return x

    def calculate_qparams(self):
        raise Exception("calculate_qparams should not be called for PlaceholderObserver")

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}, is_dynamic={self.is_dynamic}"


class NoopObserver(PlaceholderObserver):
    """An observer that does nothing (dtype float16 by default, as torch's)."""

    def __init__(self, dtype=None, custom_op_name=""):
        from ... import float16

        super().__init__(dtype=float16 if dtype is None else dtype, custom_op_name=custom_op_name)

    def extra_repr(self) -> str:
        return ""  # torch's NoopObserver() shows nothing


# these two import the classes above: HistogramObserver subclasses them, and the ready-made
# ``with_args`` partials (torch's names) are built from them
from ._observer_defaults import (  # noqa: E402, F401
    default_dynamic_quant_observer,
    default_float_qparams_observer,
    default_histogram_observer,
    default_observer,
    default_per_channel_weight_observer,
    default_placeholder_observer,
    default_weight_observer,
    per_channel_weight_observer_range_neg_127_to_127,
    weight_observer_range_neg_127_to_127,
)
from .histogram import HistogramObserver  # noqa: E402
