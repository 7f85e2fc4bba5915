"""``ember.backends.mkl``: Intel MKL. With the optional ``mkl`` wheel (``pip install
ember[mkl]``) ember runs float32/float64 matrix products through MKL (``ember.backend.mkl_gemm``);
otherwise through NumPy's BLAS (OpenBLAS in the wheels)."""

from __future__ import annotations

__all__ = ["is_available", "verbose", "VERBOSE_OFF", "VERBOSE_ON"]

VERBOSE_OFF = 0
VERBOSE_ON = 1


def is_available() -> bool:
    """True when ember's matrix products use MKL: the ``mkl`` wheel's path is on, or NumPy's own
    BLAS is MKL."""
    from ..backend import mkl_gemm

    if mkl_gemm.enabled():
        return True
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
