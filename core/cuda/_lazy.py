"""Why CUDA is unusable, raised where PyTorch's CPU build raises (its lazy CUDA init)."""

from __future__ import annotations

from ..backend import _cupy


def cupy_or_raise():
    """The cupy module; without it an AssertionError like PyTorch's CPU build ("not compiled
    with CUDA enabled"), with CuPy but no usable device a RuntimeError saying why."""
    if _cupy.cupy is not None:
        return _cupy.cupy
    if _cupy._error and "unusable" in _cupy._error:
        raise RuntimeError(_cupy._error)
    raise AssertionError(f"ember not compiled with CUDA enabled ({_cupy._error})")


def has_cuda() -> bool:
    return _cupy.cupy is not None


def device_index(device=None, optional: bool = True) -> int:
    """The CUDA device index of an int/str/device/None (None: the current device)."""
    from ..backend.device import device as _device

    if device is None or device == -1:
        return cupy_or_raise().cuda.Device().id
    if isinstance(device, int):
        return device
    if isinstance(device, str):
        device = _device(device)
    if isinstance(device, _device):
        if device.type != "cuda":
            raise ValueError(f"Expected a cuda device, but got: {device}")
        return cupy_or_raise().cuda.Device().id if device.index is None else device.index
    raise ValueError(f"Expected a cuda device, but got: {device!r}")
