"""Flat storage whose memory can be handed back while views of it stay valid.

FSDP frees a unit's gathered parameters after forward although the autograd graph still holds
views of them (saved for backward), and gathers them again into the same place before
backward. PyTorch does this with ``storage.resize_(0)``; NumPy cannot resize memory under live
views, so on the CPU the storage is a private anonymous ``mmap`` and freeing is
``madvise(MADV_DONTNEED)``: the pages go back to the OS at once, the addresses stay mapped,
and the next all-gather faults fresh pages in. CUDA memory cannot be handed back under live
CuPy views, so there ``release()`` only marks the storage (the memory report still counts it).
"""

from __future__ import annotations

import mmap

import numpy as np

_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


class FlatStorage:
    """``numel`` elements of ``dtype`` (a NumPy dtype) on ``device``, as one flat array."""

    __slots__ = ("array", "resident", "_map", "_releasable")

    def __init__(self, numel: int, dtype, device) -> None:
        dtype = np.dtype(dtype)
        self._map = None
        if device.type == "cpu" and _DONTNEED is not None and numel > 0:
            self._map = mmap.mmap(
                -1, numel * dtype.itemsize, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
            )
            self.array = np.frombuffer(self._map, dtype=dtype, count=numel)
            self._releasable = True
        else:
            from ember.backend import get_array_module

            self.array = get_array_module(device).empty(numel, dtype=dtype)
            self._releasable = False
        self.resident = True

    @property
    def nbytes(self) -> int:
        return self.array.nbytes

    def release(self) -> None:
        """Give the memory back (the contents become zeros on the CPU)."""
        if self.resident and self._releasable:
            self._map.madvise(_DONTNEED)
        self.resident = False

    def acquire(self) -> None:
        """Mark the storage as about to be written in full (pages fault back in on write)."""
        self.resident = True
