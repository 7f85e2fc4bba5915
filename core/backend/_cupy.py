"""Guarded CuPy import: ember imports and runs with no CuPy and no GPU."""

from __future__ import annotations

cupy = None
_error: str | None = None
try:  # pragma: no cover - depends on the machine
    import cupy as _cp

    try:
        _cp.cuda.runtime.getDeviceCount()
        cupy = _cp
    except Exception as exc:  # CuPy installed but no driver / no device
        _error = f"CuPy is installed but CUDA is unusable: {exc}"
except ImportError:
    _error = "CuPy is not installed (pip install 'ember[gpu]')"


def require_cupy():
    """Return the cupy module or raise a clear error saying why CUDA is unavailable."""
    if cupy is None:
        raise RuntimeError(f"CUDA is not available: {_error}")
    return cupy
