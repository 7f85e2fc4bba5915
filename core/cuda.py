"""``ember.cuda``: availability and device management through CuPy."""

from __future__ import annotations

from .backend import _cupy
from .backend.device import device_count, is_available

__all__ = ["is_available", "device_count", "current_device", "set_device", "synchronize",
           "manual_seed", "manual_seed_all"]


def current_device() -> int:
    return _cupy.require_cupy().cuda.Device().id


def set_device(device) -> None:
    from .backend.device import as_device

    idx = device if isinstance(device, int) else as_device(device).index
    _cupy.require_cupy().cuda.Device(idx).use()


def synchronize(device=None) -> None:
    if _cupy.cupy is not None:
        _cupy.cupy.cuda.runtime.deviceSynchronize()


def manual_seed(seed: int) -> None:
    """CUDA draws come from the default generator; seeding it seeds both."""
    from .random import manual_seed as _seed

    _seed(seed)


manual_seed_all = manual_seed
