"""Splitting a compiled kernel's work across threads: the numba kernels release the GIL
(``nogil=True``), so slices of their rows or elements run in the shared worker pool
(``backend.threads.thread_pool``), as many as ``set_num_threads`` asks for.

Work below ``_MIN_PER_THREAD`` elements per thread stays on the calling thread: handing a slice
to a worker costs ~20-50 us, the time of ~64K elements of these kernels.
"""

from __future__ import annotations

from ..backend.threads import num_threads, thread_pool

_MIN_PER_THREAD = 1 << 16


def split_call(fn, n_items: int, item_size: int, args_for) -> None:
    """``fn(*args_for(lo, hi))`` over consecutive ranges covering ``range(n_items)``, one per
    thread (``num_threads()``, fewer when an item range would hold under ``_MIN_PER_THREAD``
    elements of ``item_size`` each); the first range runs on the calling thread."""
    nt = min(num_threads(), n_items, max(1, n_items * item_size // _MIN_PER_THREAD))
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
