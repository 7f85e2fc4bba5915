"""Reading an ember file's tensors: the tensor records checked, each rebuilt (memoised, so
shared tensors stay shared) and placed on the device ``map_location`` asks for, with
PyTorch's rules and errors.

Used by ``ember.load`` / ``load_safetensors`` (``core/serialization.py``, which re-exports these
names) and, for ``map_location``, by the PyTorch-checkpoint reader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from . import _serialization_codec as codec
from . import _serialization_io as sio
from .backend import _cupy
from .backend.device import as_device, device, device_count, is_available
from .tensor import Tensor

MapLocation = None | str | device | int | dict | Callable


def _check_device(target) -> device:
    """The device ``target`` names, with torch's errors for CUDA that is absent or too small."""
    if isinstance(target, int) and not isinstance(target, bool):
        dev = device("cuda", target)
    elif isinstance(target, (str, device)):
        dev = device(target)
    else:
        raise TypeError(
            f"map_location: expected a device, str, int, dict or callable, got "
            f"{type(target).__name__}"
        )
    if dev.type == "cuda":
        if not is_available():
            raise RuntimeError(
                "Attempting to deserialize object on a CUDA device but "
                "ember.cuda.is_available() is False. If you are running on a CPU-only machine, "
                "please use ember.load with map_location=ember.device('cpu') to map your "
                f"tensors to the CPU. ({_cupy._error})"
            )
        dev = as_device(dev)
        if dev.index >= device_count():
            raise RuntimeError(
                f"Attempting to deserialize object on CUDA device {dev.index} but "
                f"ember.cuda.device_count() is {device_count()}. Please use ember.load with "
                "map_location to map your tensors to an existing device."
            )
    return dev


def default_restore_location(storage: Tensor, location: str) -> Tensor:
    """``torch.serialization.default_restore_location``: ``storage`` placed on the device that
    ``location`` names (``"cpu"``, ``"cuda:0"``), with ``ember.load``'s errors for a missing
    device. A ``map_location`` callable receives ember's data as a CPU tensor, so this is what
    ``map_location=lambda s, _: default_restore_location(s, "cpu")`` (torchvision's
    ``references/classification/utils.py``) needs."""
    dev = _check_device(location)
    return storage if storage.device == dev else storage.to(dev)


def _place(arr: np.ndarray, saved: str, map_location: MapLocation) -> np.ndarray:
    """The array for data saved on device ``saved``, moved as ``map_location`` asks (torch's
    rules: None keeps the saved device; a str/device/int picks one; a dict maps location
    strings; a callable ``fn(cpu_tensor, location)`` returns a tensor or None for the default)."""
    if map_location is None:
        target = saved
    elif isinstance(map_location, dict):
        table = {
            str(device(k)) if not isinstance(k, device) else str(k): v
            for k, v in map_location.items()
        }
        target = table.get(saved, saved)
    elif callable(map_location) and not isinstance(map_location, device):
        out = map_location(Tensor._wrap(arr), saved)
        if out is None:
            target = saved
        elif isinstance(out, Tensor):
            return out._data
        else:
            raise TypeError(
                f"map_location returned {type(out).__name__}, expected a Tensor or None"
            )
    else:
        target = map_location
    dev = _check_device(target)
    if dev.type == "cpu":
        return arr
    cp = _cupy.require_cupy()
    with cp.cuda.Device(dev.index):
        return cp.asarray(arr)


def _meta_array(rec: dict):
    from .backend import meta

    if not all(type(d) is int and d >= 0 for d in rec["shape"]):
        raise codec.FormatError(f"bad shape {rec['shape']!r}")
    try:
        return meta.empty(rec["shape"], np.dtype(rec["dtype"]))
    except TypeError:
        raise codec.FormatError(f"unknown dtype {rec['dtype']!r}") from None


class _Tensors:
    """Builds tensors from records, memoised so shared tensors and data stay shared."""

    def __init__(self, src: sio.Source, records: list, map_location: MapLocation):
        self.src, self.records, self.map_location = src, records, map_location
        self._tensors: dict[int, Tensor] = {}
        self._entries: dict[str, np.ndarray] = {}
        self._placed: dict[tuple[str, str], Any] = {}

    def entry(self, name: str) -> np.ndarray:
        arr = self._entries.get(name)
        if arr is None:
            arr = self._entries[name] = self.src.array(name)
        return arr

    def tensor(self, i: int) -> Tensor:
        t = self._tensors.get(i)
        if t is not None:
            return t
        if not 0 <= i < len(self.records):
            raise codec.FormatError(f"tensor index {i} out of range")
        rec = self.records[i]
        key = (rec["entry"], rec["device"])
        data = self._placed.get(key)
        if rec["device"] == "meta":  # meta stays meta whatever map_location says, as in torch
            data = _meta_array(rec)
        elif data is None:
            arr = codec.restore_array(self.entry(rec["entry"]), rec["dtype"], rec["shape"])
            data = self._placed[key] = _place(arr, rec["device"], self.map_location)
        t = Tensor._wrap(data)
        if rec["kind"] == "parameter":
            from .nn.parameter import Parameter

            t = Parameter(t, requires_grad=rec["requires_grad"])
        else:
            t.requires_grad = bool(rec["requires_grad"])
        if "state" in rec:
            t.__dict__.update(codec.decode(rec["state"], self.tensor, self.entry))
        self._tensors[i] = t
        return t


_RECORD_FIELDS = {
    "entry": str,
    "dtype": str,
    "shape": list,
    "device": str,
    "requires_grad": bool,
    "kind": str,
}


def _check_records(records) -> list[dict]:
    """Tensor records as written by ``save``; anything else is a corrupted file."""
    if not isinstance(records, list):
        raise codec.FormatError("the tensor table is not a list")
    for rec in records:
        if not isinstance(rec, dict) or any(
            type(rec.get(k)) is not tp for k, tp in _RECORD_FIELDS.items()
        ):
            raise codec.FormatError(f"bad tensor record {rec!r}")
        if rec["kind"] not in ("tensor", "parameter"):
            raise codec.FormatError(f"unknown tensor kind {rec['kind']!r}")
    return records
