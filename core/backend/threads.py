"""``set_num_threads`` / ``get_num_threads``: the BLAS/OpenMP thread pools NumPy uses.

NumPy fixes its pool size at import from OMP_NUM_THREADS / OPENBLAS_NUM_THREADS; these change it
at run time through threadpoolctl, like ``torch.set_num_threads``. On a busy machine a pool
larger than the free cores makes small matrix products many times slower.
"""

from __future__ import annotations

import threading

_limiter = None
_cached: int | None = None  # the pool size last set or read (reading it costs ~1 ms)


def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for BLAS and OpenMP work from now on (process-wide)."""
    global _limiter
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n!r}")
    global _cached
    controller = _controller()
    _limiter = controller.limit(limits=n)
    _cached = n
    from . import openblas_pool

    # an OpenBLAS loaded after ``import ember`` (SciPy's) sleeps soon too
    openblas_pool.catch_up(controller)


def get_num_threads() -> int:
    """The BLAS thread-pool size in use (1 when no BLAS pool is found)."""
    info = [p for p in _controller().info() if p.get("user_api") == "blas"]
    return max((p["num_threads"] for p in info), default=1)


def num_threads() -> int:
    """The BLAS pool size, read once and then tracked through ``set_num_threads`` (cheap); 1
    on a thread that runs one part of a split op (``run_parts``)."""
    global _cached
    if getattr(_local, "one", False):
        return 1
    if _cached is None:
        _cached = get_num_threads()
    return _cached


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the OS has one)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_pool = None


def thread_pool():
    """A small shared thread pool for splitting NumPy work (ufuncs and BLAS release the GIL)."""
    global _pool
    if _pool is None:
        import os
        from concurrent.futures import ThreadPoolExecutor

        _pool = ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="ember-worker"
        )
    return _pool


# Per-thread state: ``one`` is set while a thread runs a part of a split op
_local = threading.local()


def as_one_thread(fn, *args):
    """``fn(*args)`` with ``num_threads() == 1`` on this thread while it runs."""
    prev = getattr(_local, "one", False)
    _local.one = True
    try:
        return fn(*args)
    finally:
        _local.one = prev


def run_parts(fn, bounds) -> list:
    """``[fn(lo, hi) for lo, hi in consecutive pairs of bounds]``, one pair a thread: the first
    on the calling thread, the others in ``thread_pool()``. Each part sees ``num_threads() ==
    1`` for its duration, so that it makes its own choices as at one thread (MKL's sequential
    GEMM, no nested split into the pool, whose two workers could then wait on each other)."""
    pool = thread_pool()
    pairs = list(zip(bounds[:-1], bounds[1:]))
    futures = [pool.submit(as_one_thread, fn, lo, hi) for lo, hi in pairs[1:]]
    try:
        first = as_one_thread(fn, *pairs[0])
    finally:
        rest = [f.result() for f in futures]
    return [first] + rest


# An update of several elementwise passes (Adam's is about twelve) runs on pieces this size,
# so that all its passes over a piece hit the core's L2 cache and each array streams through
# memory once, not once per pass: Adam on the 535k-parameter mlp (DESIGN.md section 7) took
# 1.94 ms whole and 1.21 ms in 128 KiB pieces here (1.49 ms at 32 KiB, 1.48 ms at 512 KiB).
_PIECE_BYTES = 128 << 10


def parallel_apply(fn, *arrays, min_size: int = 1 << 16) -> None:
    """``fn(*arrays)`` for an elementwise in-place update, on cache-sized pieces and split
    across the BLAS thread count.

    For large contiguous NumPy arrays the update runs on consecutive flat pieces of
    ``_PIECE_BYTES`` (see above), and with more than one BLAS thread on equal flat slices in
    a small thread pool (ufuncs release the GIL). Elementwise math gives bitwise the same
    result either way. Other arrays (CuPy's, strided ones) are updated whole.
    """
    a0 = arrays[0]
    if (
        type(a0).__module__ != "numpy"
        or a0.size < min_size
        or not all(a.flags.c_contiguous and a.size == a0.size for a in arrays)
    ):
        fn(*arrays)
        return
    flats = [a.reshape(-1) for a in arrays]
    n = num_threads()
    if n < 2:
        _in_pieces(fn, flats, 0, a0.size)
        return
    pool = thread_pool()
    bounds = [a0.size * i // n for i in range(n + 1)]
    futures = [
        pool.submit(_in_pieces, fn, flats, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])
    ]
    for f in futures:
        f.result()


def _in_pieces(fn, flats: list, lo: int, hi: int) -> None:
    step = max(1, _PIECE_BYTES // flats[0].itemsize)
    for s in range(lo, hi, step):
        e = min(s + step, hi)
        fn(*[f[s:e] for f in flats])
