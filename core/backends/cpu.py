"""``ember.backends.cpu``: what the CPU offers to ember's kernels (NumPy's SIMD dispatch)."""

from __future__ import annotations

__all__ = ["get_cpu_capability"]


def get_cpu_capability() -> str:
    """The best vector extension NumPy dispatches to: "AVX512", "AVX2", ... or "DEFAULT"."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as feats
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_features__ as feats
    for name, key in (
        ("AVX512", "AVX512F"),
        ("AVX2", "AVX2"),
        ("SVE256", "SVE"),
        ("NEON", "ASIMD"),
        ("VSX", "VSX"),
        ("ZVECTOR", "VX"),
    ):
        if feats.get(key):
            return name
    return "DEFAULT"
