"""``ember.version``: build information, with ``torch.version``'s fields."""

from __future__ import annotations

from .torch_version import TorchVersion

__all__ = [
    "__version__",
    "debug",
    "cuda",
    "git_version",
    "hip",
    "rocm",
    "xpu",
    "ember",
    "torch_api",
]

#: ember's own release (the installed distribution's version).
ember = "0.1.0"
#: The PyTorch release whose API ember follows.
torch_api = "2.13.0"
#: ``torch.__version__``'s role: the API level, with ember's release as the PEP 440 local label
#: (as PyTorch's wheels say ``2.13.0+cpu``). Programs gate features on it (x-transformers and
#: denoising-diffusion-pytorch check ``torch.__version__ >= 2.0`` before using
#: ``F.scaled_dot_product_attention``); ember's own 0.1.0 turned those paths off.
__version__ = TorchVersion(f"{torch_api}+ember.{ember}")
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
