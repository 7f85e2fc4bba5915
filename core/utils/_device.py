"""``ember.utils._device``: the default-device context of PyTorch's private module.

Libraries import it by path (litgpt's ``utils`` does at import); ``with ember.device(...)``
and ``ember.set_default_device`` are the public ways to the same state.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from ember.backend.device import _DEFAULT
from ember.backend.device import device as _device_cls

# torch keeps the device of the innermost ``DeviceContext`` here (None: none entered)
CURRENT_DEVICE: _device_cls | None = None


class DeviceContext:
    """Makes ``device`` the default of the tensor factories inside a ``with`` block."""

    def __init__(self, device: Any) -> None:
        self.device = _device_cls(device)

    def __enter__(self) -> DeviceContext:
        global CURRENT_DEVICE
        self._saved = (_DEFAULT[0], CURRENT_DEVICE)
        _DEFAULT[0] = CURRENT_DEVICE = self.device
        return self

    def __exit__(self, *exc: object) -> None:
        global CURRENT_DEVICE
        _DEFAULT[0], CURRENT_DEVICE = self._saved


def device_decorator(device: Any, func: Callable) -> Callable:
    """``func`` run inside ``DeviceContext(device)``."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with DeviceContext(device):
            return func(*args, **kwargs)

    return wrapper


def set_device(device: Any) -> Callable[[Callable], Callable]:
    """Decorator: the wrapped function creates its tensors on ``device`` by default."""
    return lambda func: device_decorator(_device_cls(device), func)
