"""``ember.Stream`` and ``ember.Event``: PyTorch's device-generic stream and event types.

``ember.Stream(device)`` builds the device's own stream (``ember.cuda.Stream`` on CUDA,
``ember.cpu.Stream`` elsewhere); ``isinstance(s, ember.Stream)`` holds for either, as
``torch.cuda.Stream`` is a ``torch.Stream`` in PyTorch. Libraries name these types in
annotations (diffusers' group offloading), so they must exist on CPU-only machines.
"""

from __future__ import annotations

__all__ = ["Event", "Stream"]


def _device_type(device) -> str:
    from .backend.device import device as _device

    if device is None:
        from ._torch_misc import get_default_device

        return get_default_device().type
    return _device(device).type if not isinstance(device, int) else "cuda"


class _Generic(type):
    def __instancecheck__(cls, obj) -> bool:
        from . import cpu, cuda

        name = cls.__name__
        return isinstance(obj, (getattr(cpu, name), getattr(cuda, name)))


class Stream(metaclass=_Generic):
    """A stream on ``device`` (CPU work always runs in order, so its stream is a no-op)."""

    def __new__(cls, device=None, priority: int = 0, **kwargs):
        from . import cpu, cuda

        if _device_type(device) == "cuda":
            return cuda.Stream(device, priority=priority, **kwargs)
        return cpu.Stream(priority=priority)


class Event(metaclass=_Generic):
    """An event on ``device``'s streams (``enable_timing``, ``blocking``, ``interprocess``)."""

    def __new__(cls, device=None, **kwargs):
        from . import cpu, cuda

        if _device_type(device) == "cuda":
            return cuda.Event(**kwargs)
        return cpu.Event()
