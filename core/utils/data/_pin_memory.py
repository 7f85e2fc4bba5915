"""Page-locked (pinned) host memory for batches, so host-to-GPU copies can run asynchronously."""

from __future__ import annotations

import numpy as np

from ...backend import _cupy
from ...tensor import Tensor


def cuda_available() -> bool:
    return _cupy.cupy is not None


def pin_memory(data):
    """Copy the CPU tensors in ``data`` (recursively through dicts, lists, tuples and
    namedtuples) into page-locked host memory; anything else is returned as is."""
    if isinstance(data, Tensor):
        return _pin_tensor(data)
    if isinstance(data, dict):
        pinned = {k: pin_memory(v) for k, v in data.items()}
        try:
            return type(data)(pinned)
        except TypeError:
            return pinned
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(pin_memory(d) for d in data))
    if isinstance(data, (list, tuple)):
        return type(data)(pin_memory(d) for d in data)
    return data


def _pin_tensor(t: Tensor) -> Tensor:  # pragma: no cover - needs CUDA
    if type(t._data) is not np.ndarray:
        return t  # already on a GPU
    _cupy.require_cupy()
    import cupyx

    out = cupyx.empty_pinned(t._data.shape, dtype=t._data.dtype)  # a NumPy array, pinned
    np.copyto(out, t._data)
    return Tensor._wrap(out)
