"""``ember.__config__``: build configuration as text, with ``torch.__config__``'s functions.

Libraries read these strings to pick code paths (PyTorch Geometric checks
``'USE_MKL=OFF' in torch.__config__.show()``), so the wording follows PyTorch's report.
"""

from __future__ import annotations

import numpy as np

__all__ = ["show", "parallel_info", "show_cxx_flags"]


def show() -> str:
    """The build configuration: ember's version, the array backend and its BLAS."""
    from . import version

    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]["name"]
    except Exception:  # older NumPy: no dict mode
        blas = "unknown"
    return (
        f"ember {version.ember} (PyTorch API {version.torch_api})\n"
        f"  - NumPy {np.__version__}, BLAS: {blas}\n"
        "Build settings: USE_MKL=OFF, USE_CUDA=OFF, USE_OPENMP=OFF, \n"
    )


def parallel_info() -> str:
    """The intra-op thread settings, like ``torch.__config__.parallel_info()``."""
    from . import get_num_interop_threads, get_num_threads

    return (
        f"ATen/Parallel:\n\tat::get_num_threads() : {get_num_threads()}\n"
        f"\tat::get_num_interop_threads() : {get_num_interop_threads()}\n"
    )


def show_cxx_flags() -> str:
    """The C++ flags ember was built with: none (it is pure Python)."""
    return ""
