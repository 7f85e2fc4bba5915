"""``ember.backends.cuda``: cuBLAS matmul precision, scaled-dot-product-attention kernels,
the cuFFT plan cache and library preferences.

``matmul.allow_tf32`` is the same setting as ``ember.set_float32_matmul_precision`` ("high"
allows TF32), as in PyTorch. The scaled-dot-product-attention toggles are the same state
``ember.nn.attention.sdpa_kernel`` sets, and ``F.scaled_dot_product_attention`` obeys them:
ember's implementation counts as MATH on every device and as FLASH_ATTENTION on CPU (its
blocked CPU path); with neither allowed it raises "No viable backend" as PyTorch does.
"""

from __future__ import annotations

import contextlib
import warnings

__all__ = [
    "is_built",
    "matmul",
    "cufft_plan_cache",
    "preferred_linalg_library",
    "preferred_blas_library",
    "enable_flash_sdp",
    "flash_sdp_enabled",
    "enable_mem_efficient_sdp",
    "mem_efficient_sdp_enabled",
    "enable_math_sdp",
    "math_sdp_enabled",
    "enable_cudnn_sdp",
    "cudnn_sdp_enabled",
    "allow_fp16_bf16_reduction_math_sdp",
    "fp16_bf16_reduction_math_sdp_allowed",
    "is_flash_attention_available",
    "can_use_flash_attention",
    "can_use_efficient_attention",
    "can_use_cudnn_attention",
    "sdp_kernel",
    "cuBLASModule",
    "cuFFTPlanCache",
    "cuFFTPlanCacheManager",
]


def is_built() -> bool:
    """Whether ember can use CUDA at all (CuPy is installed)."""
    from ..backend import _cupy

    return _cupy.cupy is not None


class cuBLASModule:
    """``ember.backends.cuda.matmul``: cuBLAS precision switches."""

    allow_fp16_reduced_precision_reduction = True
    allow_bf16_reduced_precision_reduction = True
    allow_fp16_accumulation = False

    @property
    def allow_tf32(self) -> bool:
        from .._torch_misc import get_float32_matmul_precision

        return get_float32_matmul_precision() != "highest"

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        from .._torch_misc import set_float32_matmul_precision

        set_float32_matmul_precision("high" if value else "highest")


#: The cuBLAS switches, a :class:`ember.backends.cuda.cuBLASModule`: ``matmul.allow_tf32`` is
#: the same setting as ``ember.set_float32_matmul_precision`` (``"high"`` allows TF32).
matmul = cuBLASModule()


class cuFFTPlanCache:
    """One device's cuFFT plan cache (CuPy keeps its own; ``size`` is always 0 here)."""

    def __init__(self, device_index: int = 0):
        self.device_index = device_index
        self.max_size = 4096

    @property
    def size(self) -> int:
        return 0

    def clear(self) -> None:
        try:  # pragma: no cover - GPU
            import cupy.fft.config as cfg

            cfg.get_plan_cache().clear()
        except Exception:
            pass


class cuFFTPlanCacheManager:
    """``cufft_plan_cache[i]`` is device ``i``'s cache; attributes go to the current one."""

    def __init__(self):
        self._caches: dict[int, cuFFTPlanCache] = {}

    def __getitem__(self, device) -> cuFFTPlanCache:
        idx = device if isinstance(device, int) else getattr(device, "index", 0) or 0
        return self._caches.setdefault(idx, cuFFTPlanCache(idx))

    def __getattr__(self, name):
        return getattr(self[0], name)


#: The cuFFT plan caches, a :class:`ember.backends.cuda.cuFFTPlanCacheManager`:
#: ``cufft_plan_cache[i]`` is device ``i``'s cache, and its attributes are device 0's.
cufft_plan_cache = cuFFTPlanCacheManager()

_linalg_library = "default"
_blas_library = "cublas"


def preferred_linalg_library(backend: str | None = None) -> str:
    """Record the preferred CUDA linear-algebra library ("default", "cusolver", "magma")."""
    global _linalg_library
    if backend is not None:
        if backend not in ("default", "cusolver", "magma"):
            raise RuntimeError(f"Unknown input value {backend!r}")
        _linalg_library = backend
    return _linalg_library


def preferred_blas_library(backend: str | None = None) -> str:
    """Record the preferred BLAS library ("cublas", "cublaslt", "ck")."""
    global _blas_library
    if backend is not None:
        if backend not in ("cublas", "cublaslt", "ck"):
            raise RuntimeError(f"Unknown input value {backend!r}")
        _blas_library = backend
    return _blas_library


_sdp = {
    "flash": True,
    "mem_efficient": True,
    "math": True,
    "cudnn": True,
    "overrideable": True,
    "fp16_bf16_reduction_math": False,
}


def _check_sdp_backend(device_type: str) -> None:
    """Raise PyTorch's error when no attention backend ember can run on ``device_type`` is
    enabled (``sdpa_kernel`` / ``enable_*_sdp``): MATH anywhere, FLASH_ATTENTION on CPU."""
    if _sdp["math"] or (_sdp["flash"] and device_type == "cpu"):
        return
    names = {
        "flash": "FLASH_ATTENTION",
        "mem_efficient": "EFFICIENT_ATTENTION",
        "cudnn": "CUDNN_ATTENTION",
        "overrideable": "OVERRIDEABLE",
    }
    enabled = [v for k, v in names.items() if _sdp[k]] or ["none"]
    raise RuntimeError(
        "No viable backend for scaled_dot_product_attention was found. This is likely due to "
        "turning off both the math kernel and the fused kernels. (ember runs MATH on every "
        f"device and FLASH_ATTENTION on CPU; enabled on {device_type}: {', '.join(enabled)})"
    )


def enable_flash_sdp(enabled: bool) -> None:
    """Allow or forbid the flash-attention kernel of scaled dot-product attention.

    ember's CPU implementation counts as the flash kernel (it is blocked for long causal
    sequences); on CUDA ember has none, so turning math off leaves no backend there.

    Args:
        enabled: whether the kernel may be chosen.
    """
    _sdp["flash"] = bool(enabled)


def flash_sdp_enabled() -> bool:
    """Whether the flash-attention kernel is allowed (``True`` unless turned off by
    :func:`ember.backends.cuda.enable_flash_sdp` or
    :func:`ember.backends.cuda.sdp_kernel`).
    """
    return _sdp["flash"]


def enable_mem_efficient_sdp(enabled: bool) -> None:
    """Allow or forbid the memory-efficient kernel of scaled dot-product attention.

    ember has no memory-efficient attention kernel: enabling it alone leaves no backend.

    Args:
        enabled: whether the kernel may be chosen.
    """
    _sdp["mem_efficient"] = bool(enabled)


def mem_efficient_sdp_enabled() -> bool:
    """Whether the memory-efficient attention kernel is allowed (``True`` unless turned off
    by :func:`ember.backends.cuda.enable_mem_efficient_sdp` or
    :func:`ember.backends.cuda.sdp_kernel`).
    """
    return _sdp["mem_efficient"]


def enable_math_sdp(enabled: bool) -> None:
    """Allow or forbid the math (reference) implementation of scaled dot-product attention.

    ember's implementation is the math one; with this off, ``F.scaled_dot_product_attention``
    runs only where flash is enabled and the input is on the CPU, and raises otherwise.

    Args:
        enabled: whether the implementation may be chosen.
    """
    _sdp["math"] = bool(enabled)


def math_sdp_enabled() -> bool:
    """Whether the math attention implementation is allowed (``True`` unless turned off by
    :func:`ember.backends.cuda.enable_math_sdp` or :func:`ember.backends.cuda.sdp_kernel`).
    """
    return _sdp["math"]


def enable_cudnn_sdp(enabled: bool) -> None:
    """Allow or forbid the cuDNN kernel of scaled dot-product attention.

    ember has no cuDNN attention kernel: enabling it alone leaves no backend.

    Args:
        enabled: whether the kernel may be chosen.
    """
    _sdp["cudnn"] = bool(enabled)


def cudnn_sdp_enabled() -> bool:
    """Whether the cuDNN attention kernel is allowed (``True`` unless turned off by
    :func:`ember.backends.cuda.enable_cudnn_sdp` or :func:`ember.backends.cuda.sdp_kernel`).
    """
    return _sdp["cudnn"]


def allow_fp16_bf16_reduction_math_sdp(enabled: bool) -> None:
    """Let the math attention implementation reduce float16/bfloat16 inputs in their own
    precision instead of float32.

    Recorded only; off by default.

    Args:
        enabled: whether the lower-precision reduction is allowed.
    """
    _sdp["fp16_bf16_reduction_math"] = bool(enabled)


def fp16_bf16_reduction_math_sdp_allowed() -> bool:
    """Whether the math attention implementation may reduce in float16/bfloat16, as set by
    :func:`ember.backends.cuda.allow_fp16_bf16_reduction_math_sdp` (``False`` by default).
    """
    return _sdp["fp16_bf16_reduction_math"]


def is_flash_attention_available() -> bool:
    """False: ember has no flash-attention kernel."""
    return False


def can_use_flash_attention(params, debug: bool = False) -> bool:
    """Whether the flash-attention kernel could run on ``params``: always ``False`` in ember.

    Args:
        params: the attention inputs to check (not looked at).
        debug: if ``True``, warn with the reason.
    """
    if debug:
        warnings.warn("ember has no flash-attention kernel", stacklevel=2)
    return False


def can_use_efficient_attention(params, debug: bool = False) -> bool:
    """Whether the memory-efficient attention kernel could run on ``params``: always
    ``False`` in ember.

    Args:
        params: the attention inputs to check (not looked at).
        debug: if ``True``, warn with the reason.
    """
    if debug:
        warnings.warn("ember has no memory-efficient attention kernel", stacklevel=2)
    return False


def can_use_cudnn_attention(params, debug: bool = False) -> bool:
    """Whether the cuDNN attention kernel could run on ``params``: always ``False`` in ember.

    Args:
        params: the attention inputs to check (not looked at).
        debug: if ``True``, warn with the reason.
    """
    if debug:
        warnings.warn("ember has no cuDNN attention kernel", stacklevel=2)
    return False


@contextlib.contextmanager
def sdp_kernel(
    enable_flash: bool = True,
    enable_math: bool = True,
    enable_mem_efficient: bool = True,
    enable_cudnn: bool = True,
):
    """Deprecated PyTorch context manager: set the SDPA kernel toggles inside a block."""
    warnings.warn(
        "torch.backends.cuda.sdp_kernel() is deprecated. In the future, this context "
        "manager will be removed. Please see torch.nn.attention.sdpa_kernel() for the "
        "new context manager, with updated signature.",
        FutureWarning,
        stacklevel=3,
    )
    old = dict(_sdp)
    _sdp.update(
        flash=enable_flash, math=enable_math, mem_efficient=enable_mem_efficient, cudnn=enable_cudnn
    )
    try:
        yield
    finally:
        _sdp.clear()
        _sdp.update(old)
