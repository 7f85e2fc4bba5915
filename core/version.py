"""``ember.version``: build information, with ``torch.version``'s fields."""

from __future__ import annotations

from .torch_version import TorchVersion

__all__ = ["__version__", "debug", "cuda", "git_version", "hip", "rocm", "xpu"]

__version__ = TorchVersion("0.1.0")
debug = False
git_version = "Unknown"
hip = None
rocm = None
xpu = None


def _cuda_version() -> str | None:
    """The CUDA runtime version CuPy was built for ("12.4"), or None without CuPy."""
    try:
        from .backend import _cupy

        if _cupy.cupy is None:
            return None
        v = int(_cupy.cupy.cuda.runtime.runtimeGetVersion())  # pragma: no cover - GPU
        return f"{v // 1000}.{v % 1000 // 10}"  # pragma: no cover
    except Exception:  # pragma: no cover
        return None


cuda = _cuda_version()
