"""``FakeQuantize``: an observer plus fake quantization, for quantization-aware training."""

from __future__ import annotations

import numpy as np

from ... import quantized as _q
from ...nn.module import Module
from ...ops.quant_ops import fake_quantize_per_channel_affine, fake_quantize_per_tensor_affine
from ...tensor import Tensor
from .observer import (
    HistogramObserver,
    MovingAverageMinMaxObserver,
    MovingAveragePerChannelMinMaxObserver,
    _np,
    _with_args,
)

__all__ = [
    "FakeQuantizeBase",
    "FakeQuantize",
    "FusedMovingAvgObsFakeQuantize",
    "default_fake_quant",
    "default_weight_fake_quant",
    "default_per_channel_weight_fake_quant",
    "default_histogram_fake_quant",
    "default_fused_act_fake_quant",
    "default_fused_wt_fake_quant",
    "default_fused_per_channel_wt_fake_quant",
    "disable_fake_quant",
    "enable_fake_quant",
    "disable_observer",
    "enable_observer",
]

_PER_CHANNEL = (
    _q.per_channel_affine,
    _q.per_channel_symmetric,
    _q.per_channel_affine_float_qparams,
)


class FakeQuantizeBase(Module):
    """Switches for fake quantization and observation, as uint8 buffers (torch's keys)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("fake_quant_enabled", Tensor._wrap(np.array([1], np.uint8)))
        self.register_buffer("observer_enabled", Tensor._wrap(np.array([1], np.uint8)))

    def enable_fake_quant(self, enabled: bool = True) -> None:
        self.fake_quant_enabled._data[0] = 1 if enabled else 0

    def disable_fake_quant(self) -> None:
        self.enable_fake_quant(False)

    def enable_observer(self, enabled: bool = True) -> None:
        self.observer_enabled._data[0] = 1 if enabled else 0

    def disable_observer(self) -> None:
        self.enable_observer(False)

    with_args = classmethod(_with_args)


class FakeQuantize(FakeQuantizeBase):
    """Observe (while enabled), then quantize-dequantize with the observed qparams; the
    gradient passes straight through inside the clamp range."""

    def __init__(
        self,
        observer=MovingAverageMinMaxObserver,
        quant_min=None,
        quant_max=None,
        is_dynamic: bool = False,
        **observer_kwargs,
    ):
        super().__init__()
        if quant_min is not None and quant_max is not None:
            if quant_min > quant_max:
                raise ValueError("quant_min must be less than or equal to quant_max")
            observer_kwargs.update(quant_min=quant_min, quant_max=quant_max)
        self.activation_post_process = observer(is_dynamic=is_dynamic, **observer_kwargs)
        obs = self.activation_post_process
        self.quant_min, self.quant_max = obs.quant_min, obs.quant_max
        self.is_dynamic = is_dynamic
        self.register_buffer("scale", Tensor(np.array([1.0], np.float32)))
        self.register_buffer("zero_point", Tensor._wrap(np.array([0], np.int32)))
        self.dtype = obs.dtype
        self.qscheme = obs.qscheme
        self.ch_axis = getattr(obs, "ch_axis", -1)
        self.is_per_channel = self.qscheme in _PER_CHANNEL

    def calculate_qparams(self):
        return self.activation_post_process.calculate_qparams()

    def forward(self, X: Tensor) -> Tensor:
        if self.observer_enabled._data[0] == 1:
            self.activation_post_process(X.detach())
            s, z = self.calculate_qparams()
            self.scale._data = _np(s).astype(np.float32)
            self.zero_point._data = _np(z).astype(np.int32)
        if self.fake_quant_enabled._data[0] == 1:
            if self.is_per_channel:
                return fake_quantize_per_channel_affine(
                    X, self.scale, self.zero_point, self.ch_axis, self.quant_min, self.quant_max
                )
            return fake_quantize_per_tensor_affine(
                X,
                float(self.scale._data[0]),
                int(self.zero_point._data[0]),
                self.quant_min,
                self.quant_max,
            )
        return X

    def extra_repr(self) -> str:
        return (
            f"fake_quant_enabled={self.fake_quant_enabled._data}, "
            f"observer_enabled={self.observer_enabled._data}, quant_min={self.quant_min}, "
            f"quant_max={self.quant_max}, dtype={self.dtype}, qscheme={self.qscheme}, "
            f"ch_axis={self.ch_axis}, scale={self.scale._data}, "
            f"zero_point={self.zero_point._data}"
        )

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # scale / zero_point are per channel once observed: take the saved shapes
        for name in ("scale", "zero_point"):
            key = prefix + name
            if key in state_dict:
                dt = np.float32 if name == "scale" else np.int32
                getattr(self, name)._data = np.array(_np(state_dict[key]), dtype=dt)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class FusedMovingAvgObsFakeQuantize(FakeQuantize):
    """Moving-average observation and fake quantization in one step (torch's fused op, the
    default in ``get_default_qat_qconfig``): the qparams come from torch's C++ rule
    (``ember.quantized.choose_qparams``: zero point nudged, symmetric schemes keep 0 exact),
    not from the observer's Python ``calculate_qparams``, exactly as torch does."""

    def calculate_qparams(self):
        obs = self.activation_post_process
        lo = np.atleast_1d(_np(obs.min_val)).astype(np.float32)
        hi = np.atleast_1d(_np(obs.max_val)).astype(np.float32)
        sym = self.qscheme in (_q.per_tensor_symmetric, _q.per_channel_symmetric)
        pairs = [
            _q.choose_qparams(a, b, self.quant_min, self.quant_max, sym)
            for a, b in zip(lo.tolist(), hi.tolist())
        ]
        return (
            Tensor(np.array([p[0] for p in pairs], np.float32)),
            Tensor._wrap(np.array([p[1] for p in pairs], np.int64)),
        )


def _toggle(method: str):
    def fn(mod) -> None:
        if isinstance(mod, FakeQuantizeBase):
            getattr(mod, method)()

    fn.__name__ = method
    fn.__doc__ = (
        f"Call ``{method}()`` on ``mod`` when it is a fake-quantize module (do nothing otherwise);"
        f" meant for ``model.apply(ember.ao.quantization.{method})``."
    )
    return fn


disable_fake_quant = _toggle("disable_fake_quant")
enable_fake_quant = _toggle("enable_fake_quant")
disable_observer = _toggle("disable_observer")
enable_observer = _toggle("enable_observer")

default_fake_quant = FakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver,
    quant_min=0,
    quant_max=255,
    dtype=_q.quint8,
    qscheme=_q.per_tensor_affine,
    reduce_range=True,
)
default_weight_fake_quant = FakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver,
    quant_min=-128,
    quant_max=127,
    dtype=_q.qint8,
    qscheme=_q.per_tensor_symmetric,
    reduce_range=False,
)
default_per_channel_weight_fake_quant = FakeQuantize.with_args(
    observer=MovingAveragePerChannelMinMaxObserver,
    quant_min=-128,
    quant_max=127,
    dtype=_q.qint8,
    qscheme=_q.per_channel_symmetric,
    reduce_range=False,
    ch_axis=0,
)
default_histogram_fake_quant = FakeQuantize.with_args(
    observer=HistogramObserver,
    quant_min=0,
    quant_max=255,
    dtype=_q.quint8,
    qscheme=_q.per_tensor_affine,
    reduce_range=True,
)
default_fused_act_fake_quant = FusedMovingAvgObsFakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver, quant_min=0, quant_max=255, dtype=_q.quint8
)
default_fused_wt_fake_quant = FusedMovingAvgObsFakeQuantize.with_args(
    observer=MovingAverageMinMaxObserver,
    quant_min=-128,
    quant_max=127,
    dtype=_q.qint8,
    qscheme=_q.per_tensor_symmetric,
)
default_fused_per_channel_wt_fake_quant = FusedMovingAvgObsFakeQuantize.with_args(
    observer=MovingAveragePerChannelMinMaxObserver,
    quant_min=-128,
    quant_max=127,
    dtype=_q.qint8,
    qscheme=_q.per_channel_symmetric,
)
