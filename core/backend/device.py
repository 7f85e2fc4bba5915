"""Devices ("cpu", "cuda", "cuda:N") and the one array-module dispatch."""

from __future__ import annotations

import numpy as np

from . import _cupy
from .meta import MetaArray
from .meta import xp as meta_xp


class device:
    """A device, PyTorch style: ``ember.device("cuda:1")`` or ``ember.device("cuda", 1)``."""

    __slots__ = ("type", "index")

    def __init__(self, type: str | device, index: int | None = None):
        if isinstance(type, device):
            self.type, self.index = type.type, type.index
            return
        if not isinstance(type, str):
            raise TypeError(f"device() expected a string or device, got {type!r}")
        name = type
        if ":" in name:
            if index is not None:
                raise ValueError(f"device string {name!r} already has an index")
            name, _, idx = name.partition(":")
            if not idx.isdigit():
                raise RuntimeError(f"Invalid device string: '{type}'")
            index = int(idx)
        if name not in ("cpu", "cuda", "meta") and name not in ABSENT_DEVICE_TYPES:
            raise RuntimeError(
                f"Expected one of cpu, cuda, meta device type at start of device string: {type}"
            )
        if name in ("cpu", "meta") and index not in (None, 0):
            raise RuntimeError(f"CPU device index must be 0 or None, got {index}")
        self.type = name
        self.index = None if name in ("cpu", "meta") else index

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other) -> bool:
        if isinstance(other, str):
            try:
                other = device(other)
            except RuntimeError:  # another framework's device name (accelerate asks "npu")
                return False
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (str(self),))

    def __enter__(self) -> device:
        """``with ember.device("cuda"):`` makes this the default device of the factories inside
        the block (as :func:`ember.set_default_device` does), restored on exit; blocks nest."""
        _ENTERED.append(_DEFAULT[0])
        _DEFAULT[0] = self
        return self

    def __exit__(self, *exc) -> None:
        _DEFAULT[0] = _ENTERED.pop()


# Device types PyTorch names that ember has no backend for: ``ember.device("mps")`` exists (so
# device-agnostic code can build and compare it) but placing a tensor there raises (as_device).
ABSENT_DEVICE_TYPES = ("mps", "xpu")
CPU = device("cpu")
META = device("meta")  # shapes and dtypes without data (backend/meta.py)
_cuda_devices: dict[int, device] = {}
# ember.set_default_device: where factories put tensors when no device is given (None: cpu)
_DEFAULT: list = [None]
_ENTERED: list = []  # the defaults that ``with device:`` blocks replaced, innermost last


def default_device() -> device:
    """The device factory functions use when no ``device=`` is given."""
    return _DEFAULT[0] or CPU


def as_device(d) -> device:
    """Normalise a str/int/device to a device; "cuda" resolves to the current CUDA device."""
    if d is None:
        return CPU
    if isinstance(d, int):
        d = device("cuda", d)
    elif not isinstance(d, device):
        d = device(d)
    if d.type in ABSENT_DEVICE_TYPES:
        raise RuntimeError(
            f"ember has no {d.type.upper()} backend: no tensor can live on device '{d}' "
            f"(ember.{d.type}.is_available() is False); use 'cpu' or 'cuda'"
        )
    if d.type == "cuda" and d.index is None:
        cp = _cupy.require_cupy()
        d = device("cuda", cp.cuda.Device().id)
    return d


def device_of(array) -> device:
    """The device an array lives on."""
    if type(array) is np.ndarray:
        return CPU
    if type(array) is MetaArray:
        return META
    if _cupy.cupy is None:
        return CPU
    idx = array.device.id
    d = _cuda_devices.get(idx)
    if d is None:
        d = _cuda_devices[idx] = device("cuda", idx)
    return d


def get_array_module(obj):
    """numpy or cupy for an array, a device, or a device string."""
    if isinstance(obj, (device, str)):
        kind = as_device(obj).type
        return np if kind == "cpu" else meta_xp if kind == "meta" else _cupy.require_cupy()
    if _cupy.cupy is not None and isinstance(obj, _cupy.cupy.ndarray):
        return _cupy.cupy
    return np


def is_available() -> bool:
    """True when CuPy is installed and at least one CUDA device is usable."""
    return _cupy.cupy is not None and _cupy.cupy.cuda.runtime.getDeviceCount() > 0


def device_count() -> int:
    return _cupy.cupy.cuda.runtime.getDeviceCount() if _cupy.cupy is not None else 0
