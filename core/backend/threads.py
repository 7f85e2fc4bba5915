"""``set_num_threads`` / ``get_num_threads``: the BLAS/OpenMP thread pools NumPy uses.

NumPy fixes its pool size at import from OMP_NUM_THREADS / OPENBLAS_NUM_THREADS; these change it
at run time through threadpoolctl, like ``torch.set_num_threads``. On a busy machine a pool
larger than the free cores makes small matrix products many times slower.
"""

from __future__ import annotations

_limiter = None


def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for BLAS and OpenMP work from now on (process-wide)."""
    global _limiter
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"set_num_threads expects a positive integer, got {n!r}")
    _limiter = _controller().limit(limits=n)


def get_num_threads() -> int:
    """The BLAS thread-pool size in use (1 when no BLAS pool is found)."""
    info = [p for p in _controller().info() if p.get("user_api") == "blas"]
    return max((p["num_threads"] for p in info), default=1)
