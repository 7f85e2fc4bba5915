"""Splitting a compiled kernel's work across threads: the numba kernels release the GIL
(``nogil=True``), so slices of their rows or elements run in the shared worker pool
(``backend.threads.thread_pool``), as many as ``set_num_threads`` asks for.

Work below ``_MIN_PER_THREAD`` elements per thread stays on the calling thread: handing a slice
to a worker costs ~20-50 us, the time of ~64K elements of these kernels.
"""

from __future__ import annotations

import numpy as np

from ..backend.threads import num_threads, thread_pool

_MIN_PER_THREAD = 1 << 16

# An output whose address is within this many bytes (mod 4 KiB) after or before an input's
# address gets a buffer of its own, shifted (see ``fresh_output``)
_ALIAS_BYTES = 512
_PAGE = 4096


def split_call(fn, n_items: int, item_size: int, args_for, min_per_thread: int = 0) -> None:
    """``fn(*args_for(lo, hi))`` over consecutive ranges covering ``range(n_items)``, one per
    thread (``num_threads()``, fewer when an item range would hold under ``min_per_thread``
    elements of ``item_size`` each, ``_MIN_PER_THREAD`` by default); the first range runs on
    the calling thread."""
    least = min_per_thread or _MIN_PER_THREAD
    nt = min(num_threads(), n_items, max(1, n_items * item_size // least))
    if nt < 2:
        fn(*args_for(0, n_items))
        return
    bounds = [n_items * i // nt for i in range(nt + 1)]
    pool = thread_pool()
    futures = [pool.submit(fn, *args_for(lo, hi)) for lo, hi in zip(bounds[1:-1], bounds[2:])]
    try:
        fn(*args_for(bounds[0], bounds[1]))
    finally:
        for f in futures:
            f.result()


def fresh_output(shape, dtype, *inputs) -> np.ndarray:
    """``np.empty(shape, dtype)`` for a kernel that streams ``inputs`` into it, placed so that
    its address is not a few bytes (mod 4 KiB) from an input's.

    The heap hands out same-sized arrays one after another, 16 bytes apart mod 4 KiB; a store
    stream 16-128 bytes after a load stream (mod 4 KiB) makes the CPU take the loads for
    reads of the pending stores (4K aliasing): the GELU kernel over 4M float32 ran 22 ms
    instead of 8 with its input and two outputs allocated in a row (interleaved, same
    process). Such an output becomes a view of a buffer 4 KiB longer, ~2 KiB from the first
    input. Only for outputs that are not gradients: the engine copies a leaf gradient that is
    a view of a larger buffer.
    """
    out = np.empty(shape, dtype)
    if out.size * out.itemsize < _PAGE or not _aliased(out, inputs):
        return out
    n, item = out.size, out.itemsize
    buf = np.empty(n + _PAGE // item, dtype)
    want = inputs[0].__array_interface__["data"][0] + _PAGE // 2
    skip = ((want - buf.__array_interface__["data"][0]) % _PAGE) // item
    return buf[skip : skip + n].reshape(shape)


def _aliased(out, inputs) -> bool:
    o = out.__array_interface__["data"][0]
    for a in inputs:
        if a.size * a.itemsize >= _PAGE:
            d = (o - a.__array_interface__["data"][0]) % _PAGE
            if 0 < d < _ALIAS_BYTES or d > _PAGE - _ALIAS_BYTES:
                return True
    return False
