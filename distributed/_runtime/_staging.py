"""Arrays as the algorithms need them: flat, contiguous, in host memory.

The algorithms (``_algorithms.py``) work on flat contiguous NumPy arrays. A tensor's array
may be strided or a CuPy array; ``staged`` gives the flat host view (or a copy) and the
function that writes the results back. NCCL works on flat contiguous CuPy arrays instead
(``device_inplace``, ``device_flat``, with the array's own module). CuPy is imported only
for CuPy arrays.
"""

from __future__ import annotations

import numpy as np

from ember.backend import get_array_module


def on_device(arr) -> bool:
    """Whether ``arr`` is a device (CuPy) array rather than a NumPy one."""
    return type(arr) is not np.ndarray


def staged(arr):
    """A flat contiguous NumPy view of ``arr`` (or a copy) and how to write results back
    (``None`` when the view is ``arr``'s own memory)."""
    if type(arr) is np.ndarray:
        if arr.flags.c_contiguous:
            return arr.reshape(-1), None
        flat = np.ascontiguousarray(arr).reshape(-1)
        return flat, lambda: np.copyto(arr, flat.reshape(arr.shape))
    import cupy  # a CuPy array without NCCL: staged through host memory

    host = np.ascontiguousarray(cupy.asnumpy(arr)).reshape(-1)
    return host, lambda: arr.__setitem__(Ellipsis, cupy.asarray(host.reshape(arr.shape)))


def host(arr) -> np.ndarray:
    """``arr`` as a NumPy array (CuPy arrays are copied to the host)."""
    if type(arr) is np.ndarray:
        return arr
    import cupy

    return cupy.asnumpy(arr)


def copy_flat(arr, out: np.ndarray | None = None) -> np.ndarray:
    """A private flat copy of ``arr`` (for inputs the op must not modify), into ``out`` if
    given (a reused scratch buffer: fresh multi-MiB allocations cost a page fault per page)."""
    src = host(arr)
    if out is None:
        return np.array(src, copy=True, order="C").reshape(-1)
    np.copyto(out.reshape(src.shape), src)
    return out


def write(arr, flat: np.ndarray) -> None:
    """Copy a flat host result into ``arr`` (any layout, NumPy or CuPy)."""
    if type(arr) is np.ndarray:
        np.copyto(arr, flat.reshape(arr.shape))
    else:
        import cupy

        arr[...] = cupy.asarray(flat.reshape(arr.shape))


def device_flat(arr):
    """A flat contiguous device array with ``arr``'s elements (``arr`` itself when it can)."""
    return get_array_module(arr).ascontiguousarray(arr).reshape(-1)


def device_inplace(arr, fn) -> None:
    """``fn(flat)`` on a flat contiguous device view of ``arr``, written back if it is a copy."""
    if arr.flags.c_contiguous:
        fn(arr.reshape(-1))
        return
    flat = device_flat(arr)
    fn(flat)
    arr[...] = flat.reshape(arr.shape)
