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
    # NumPy's build says which BLAS it links (asking threadpoolctl instead would also count an
    # MKL some other library loaded into the process, e.g. the mkl wheel after a forced load)
    try:
        import numpy as np

        return "mkl" in str(np.__config__.CONFIG["Build Dependencies"]["blas"]["name"]).lower()
    except (AttributeError, KeyError, TypeError):
        return False


class verbose:
    """``with ember.backends.mkl.verbose(level):`` - MKL verbosity; a no-op in ember."""

    def __init__(self, enable: int):
        self.enable = enable

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
