"""``ember.accelerator``: the device-generic accelerator API. ember's only accelerator is
CUDA (through CuPy); without it ``current_accelerator()`` is None and ``device_count()`` 0."""

from __future__ import annotations

from . import cuda as _cuda
from .backend.device import device as _device

__all__ = [
    "current_accelerator",
    "current_device_idx",
    "current_device_index",
    "get_device_capability",
    "current_stream",
    "device_count",
    "device_index",
    "empty_cache",
    "empty_host_cache",
    "get_memory_info",
    "is_available",
    "max_memory_allocated",
    "max_memory_reserved",
    "memory_allocated",
    "memory_reserved",
    "memory_stats",
    "reset_accumulated_memory_stats",
    "reset_peak_memory_stats",
    "set_device_idx",
    "set_device_index",
    "set_stream",
    "synchronize",
]


def _require():
    if not is_available():
        raise RuntimeError("ember has no accelerator available (CUDA via CuPy is needed)")


def is_available() -> bool:
    return _cuda.is_available()


def current_accelerator(check_available: bool = False):
    """``device(type='cuda')`` when CUDA is usable, else None."""
    if _cuda.is_available():
        return _device("cuda")
    return None


def device_count() -> int:
    return _cuda.device_count()


def current_device_index() -> int:
    _require()
    return _cuda.current_device()  # pragma: no cover - GPU


current_device_idx = current_device_index


def set_device_index(device) -> None:
    _require()
    _cuda.set_device(device)  # pragma: no cover - GPU


set_device_idx = set_device_index


class device_index:
    """``with ember.accelerator.device_index(i):`` (None: a no-op)."""

    def __init__(self, device):
        self._ctx = _cuda.device(device)

    def __enter__(self):
        self._ctx.__enter__()

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def current_stream(device=None):
    _require()
    return _cuda.current_stream(device)  # pragma: no cover - GPU


def set_stream(stream) -> None:
    _require()
    _cuda.set_stream(stream)  # pragma: no cover - GPU


def synchronize(device=None) -> None:
    _require()
    _cuda.synchronize(device)  # pragma: no cover - GPU


def get_device_capability(device=None) -> dict:
    _require()
    major, minor = _cuda.get_device_capability(device)  # pragma: no cover - GPU
    return {"major": major, "minor": minor}  # pragma: no cover


def empty_cache() -> None:
    _cuda.empty_cache()


def empty_host_cache() -> None:
    _cuda.empty_cache()


def get_memory_info(device=None) -> tuple[int, int]:
    _require()
    return _cuda.mem_get_info(device)  # pragma: no cover - GPU


def memory_allocated(device=None) -> int:
    return _cuda.memory_allocated(device)


def max_memory_allocated(device=None) -> int:
    return _cuda.max_memory_allocated(device)


def memory_reserved(device=None) -> int:
    return _cuda.memory_reserved(device)


def max_memory_reserved(device=None) -> int:
    return _cuda.max_memory_reserved(device)


def memory_stats(device=None):
    return _cuda.memory_stats(device)


def reset_peak_memory_stats(device=None) -> None:
    _require()
    _cuda.reset_peak_memory_stats(device)  # pragma: no cover - GPU


def reset_accumulated_memory_stats(device=None) -> None:
    _require()
    _cuda.reset_accumulated_memory_stats(device)  # pragma: no cover - GPU
