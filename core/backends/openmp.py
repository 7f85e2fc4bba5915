"""``ember.backends.openmp``: ember's kernels run through NumPy, which does not use OpenMP."""

from __future__ import annotations

__all__ = ["is_available"]


def is_available() -> bool:
    """True when NumPy's BLAS is threaded with OpenMP."""
    try:
        from threadpoolctl import threadpool_info

        return any(p.get("user_api") == "openmp" for p in threadpool_info())
    except Exception:
        return False
