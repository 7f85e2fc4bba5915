"""``ember.backends.mkl``: Intel MKL. ember calls NumPy's BLAS (OpenBLAS in the wheels)."""

from __future__ import annotations

__all__ = ["is_available", "verbose", "VERBOSE_OFF", "VERBOSE_ON"]

VERBOSE_OFF = 0
VERBOSE_ON = 1


def is_available() -> bool:
    """True when NumPy's BLAS is MKL."""
    try:
        from threadpoolctl import threadpool_info

        return any(p.get("internal_api") == "mkl" for p in threadpool_info())
    except Exception:
        return False


class verbose:
    """``with ember.backends.mkl.verbose(level):`` - MKL verbosity; a no-op in ember."""

    def __init__(self, enable: int):
        self.enable = enable

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
