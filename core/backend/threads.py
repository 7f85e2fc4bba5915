"""``set_num_threads`` / ``get_num_threads``: the BLAS/OpenMP thread pools NumPy uses.

NumPy fixes its pool size at import from OMP_NUM_THREADS / OPENBLAS_NUM_THREADS; these change it
at run time through threadpoolctl, like ``torch.set_num_threads``. On a busy machine a pool
larger than the free cores makes small matrix products many times slower.
"""

from __future__ import annotations

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
    _limiter = _controller().limit(limits=n)
    _cached = n


def get_num_threads() -> int:
    """The BLAS thread-pool size in use (1 when no BLAS pool is found)."""
    info = [p for p in _controller().info() if p.get("user_api") == "blas"]
    return max((p["num_threads"] for p in info), default=1)


def num_threads() -> int:
    """The BLAS pool size, read once and then tracked through ``set_num_threads`` (cheap)."""
    global _cached
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

        _pool = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                   thread_name_prefix="ember-worker")
    return _pool


def parallel_apply(fn, *arrays, min_size: int = 1 << 16) -> None:
    """``fn(*arrays)`` for an elementwise in-place update, split across the BLAS thread count.

    NumPy runs elementwise ufuncs on one thread; for large contiguous NumPy arrays the update
    runs on equal flat slices in a small thread pool (ufuncs release the GIL). Elementwise math
    gives bitwise the same result either way.
    """
    n = num_threads()
    a0 = arrays[0]
    if (n < 2 or type(a0).__module__ != "numpy" or a0.size < min_size
            or not all(a.flags.c_contiguous and a.size == a0.size for a in arrays)):
        fn(*arrays)
        return
    pool = thread_pool()
    flats = [a.reshape(-1) for a in arrays]
    bounds = [a0.size * i // n for i in range(n + 1)]
    futures = [pool.submit(fn, *[f[lo:hi] for f in flats])
               for lo, hi in zip(bounds[:-1], bounds[1:])]
    for f in futures:
        f.result()
