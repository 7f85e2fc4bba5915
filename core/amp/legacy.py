"""The deprecated per-device spellings: ``ember.cuda.amp`` and ``ember.cpu.amp``.

Each warns (``FutureWarning``, torch's text) and forwards to ``ember.amp`` with the device fixed.
"""

from __future__ import annotations

import functools
import warnings

from ..backend.dtype import bfloat16, float16
from ..backend.dtype import dtype as _dtype
from .autocast_mode import autocast as _autocast
from .autocast_mode import custom_bwd as _custom_bwd
from .autocast_mode import custom_fwd as _custom_fwd
from .grad_scaler import GradScaler as _GradScaler


def _deprecated(old: str, new: str) -> None:
    warnings.warn(
        f"`{old}(args...)` is deprecated. Please use `{new}` instead.", FutureWarning, stacklevel=3
    )


class CudaAutocast(_autocast):
    """``ember.cuda.amp.autocast(enabled, dtype, cache_enabled)``."""

    def __init__(self, enabled: bool = True, dtype: _dtype = float16, cache_enabled: bool = True):
        _deprecated("torch.cuda.amp.autocast", "torch.amp.autocast('cuda', args...)")
        super().__init__("cuda", enabled=enabled, dtype=dtype, cache_enabled=cache_enabled)


class CpuAutocast(_autocast):
    """``ember.cpu.amp.autocast(enabled, dtype, cache_enabled)``."""

    def __init__(self, enabled: bool = True, dtype: _dtype = bfloat16, cache_enabled: bool = True):
        _deprecated("torch.cpu.amp.autocast", "torch.amp.autocast('cpu', args...)")
        super().__init__("cpu", enabled=enabled, dtype=dtype, cache_enabled=cache_enabled)


class CudaGradScaler(_GradScaler):
    """``ember.cuda.amp.GradScaler(init_scale, growth_factor, backoff_factor, ...)``."""

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ) -> None:
        _deprecated("torch.cuda.amp.GradScaler", "torch.amp.GradScaler('cuda', args...)")
        super().__init__(
            "cuda", init_scale, growth_factor, backoff_factor, growth_interval, enabled
        )


class CpuGradScaler(_GradScaler):
    """``ember.cpu.amp.GradScaler(init_scale, growth_factor, backoff_factor, ...)``."""

    def __init__(
        self,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
        enabled: bool = True,
    ) -> None:
        _deprecated("torch.cpu.amp.GradScaler", "torch.amp.GradScaler('cpu', args...)")
        super().__init__("cpu", init_scale, growth_factor, backoff_factor, growth_interval, enabled)


def cuda_custom_fwd(fwd=None, *, cast_inputs: _dtype | None = None):
    """``ember.cuda.amp.custom_fwd``: ``ember.amp.custom_fwd(device_type="cuda")``."""
    if fwd is None:
        return functools.partial(cuda_custom_fwd, cast_inputs=cast_inputs)
    _deprecated("torch.cuda.amp.custom_fwd", "torch.amp.custom_fwd(args..., device_type='cuda')")
    return _custom_fwd(fwd, device_type="cuda", cast_inputs=cast_inputs)


def cuda_custom_bwd(bwd):
    """``ember.cuda.amp.custom_bwd``: ``ember.amp.custom_bwd(device_type="cuda")``."""
    _deprecated("torch.cuda.amp.custom_bwd", "torch.amp.custom_bwd(args..., device_type='cuda')")
    return _custom_bwd(bwd, device_type="cuda")
