"""``ember.cpu``: the CPU as a device module, mirroring ``ember.cuda`` (as ``torch.cpu``)."""

from __future__ import annotations

__all__ = [
    "is_available",
    "is_initialized",
    "synchronize",
    "current_device",
    "current_stream",
    "stream",
    "set_device",
    "device_count",
    "Stream",
    "StreamContext",
    "Event",
    "get_capabilities",
]


def is_available() -> bool:
    return True


def is_initialized() -> bool:
    return True


def synchronize(device=None) -> None:
    """No-op: CPU ops finish before they return."""


def current_device() -> str:
    return "cpu"


def set_device(device) -> None:
    """No-op: there is one CPU device."""


def device_count() -> int:
    return 1


def get_capabilities() -> dict:
    """The CPU's SIMD features as NumPy sees them (``{"AVX2": True, ...}``)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    return dict(feats)


class Stream:
    """The CPU "stream": work runs in order and is always done."""

    def __init__(self, priority: int = -1):
        self.priority = priority

    def wait_stream(self, stream) -> None:
        pass

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        pass

    def record_event(self, event=None):
        return event if event is not None else Event()


class Event:
    def query(self) -> bool:
        return True

    def record(self, stream=None) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def wait(self, stream=None) -> None:
        pass


_current = Stream()


def current_stream(device=None) -> Stream:
    return _current


class StreamContext:
    """``with ember.cpu.stream(s):`` - a no-op context, for device-generic code."""

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc):
        return False


def stream(stream) -> StreamContext:
    return StreamContext(stream)


def __getattr__(name):
    if name == "amp":  # torch.cpu.amp: the deprecated CPU autocast spelling (core/amp/cpu_amp.py)
        from .amp import cpu_amp

        return cpu_amp
    raise AttributeError(f"module 'ember.cpu' has no attribute {name!r}")
