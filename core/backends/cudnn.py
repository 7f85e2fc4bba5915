"""``ember.backends.cudnn``: cuDNN switches.

ember's convolutions are its own (im2col + cuBLAS through CuPy), so ``enabled``, ``benchmark``
and ``allow_tf32`` are recorded only. ``deterministic`` joins
``ember.use_deterministic_algorithms``: ops read both through
``ember._torch_misc.deterministic_requested()``.
"""

from __future__ import annotations

import contextlib
import sys

__all__ = [
    "is_available",
    "version",
    "is_acceptable",
    "flags",
    "set_flags",
    "enabled",
    "benchmark",
    "benchmark_limit",
    "deterministic",
    "allow_tf32",
    "fp32_precision",
]

#: Whether cuDNN may be used. Recorded only: ember's convolutions do not go through cuDNN
#: (:func:`ember.backends.cudnn.is_acceptable` does read it).
enabled = True
#: Whether cuDNN should time its candidate algorithms and keep the fastest for each input
#: shape. Recorded only.
benchmark = False
#: The number of cuDNN algorithms to time when ``benchmark`` is on. Recorded only.
benchmark_limit = 10
#: Ask for deterministic kernels. Ops read it together with
#: ``ember.use_deterministic_algorithms``: either one turns determinism on.
deterministic = False
#: Whether cuDNN convolutions may compute float32 in TensorFloat-32 on GPUs that have it.
#: Recorded only.
allow_tf32 = True
#: The float32 precision cuDNN may use (PyTorch's values: ``"none"``, ``"ieee"``,
#: ``"tf32"``). Recorded only; ember does not check the value.
fp32_precision = "none"


def _cudnn():
    from ..backend import _cupy

    if _cupy.cupy is None:
        return None
    try:  # pragma: no cover - GPU
        from cupy_backends.cuda.libs import cudnn

        return cudnn
    except Exception:  # pragma: no cover
        return None


def is_available() -> bool:
    """True when CuPy can load cuDNN."""
    return _cudnn() is not None


def version() -> int | None:
    """The cuDNN version (e.g. 90100), or None without cuDNN (as PyTorch's CPU build)."""
    lib = _cudnn()
    return None if lib is None else int(lib.getVersion())  # pragma: no cover


def is_acceptable(tensor) -> bool:
    """Whether cuDNN would handle ``tensor``: a CUDA float tensor with cuDNN enabled."""
    return bool(
        enabled
        and tensor.is_cuda
        and is_available()
        and tensor.dtype.name in ("float16", "bfloat16", "float32", "float64")
    )


def set_flags(
    _enabled=None,
    _benchmark=None,
    _benchmark_limit=None,
    _deterministic=None,
    _allow_tf32=None,
    _fp32_precision="none",
):
    """Set the cuDNN flags and return their previous values.

    An argument left as ``None`` keeps its flag unchanged; ``_fp32_precision`` defaults to
    ``"none"`` rather than ``None``, so it is always set.

    Args:
        _enabled: new value of ``enabled``.
        _benchmark: new value of ``benchmark``.
        _benchmark_limit: new value of ``benchmark_limit``.
        _deterministic: new value of ``deterministic``.
        _allow_tf32: new value of ``allow_tf32``.
        _fp32_precision: new value of ``fp32_precision``.

    Returns:
        tuple: the previous ``(enabled, benchmark, benchmark_limit, deterministic,
        allow_tf32, fp32_precision)``, in the order this function takes them, so that passing
        it back restores them.
    """
    mod = sys.modules[__name__]
    old = (
        mod.enabled,
        mod.benchmark,
        mod.benchmark_limit,
        mod.deterministic,
        mod.allow_tf32,
        mod.fp32_precision,
    )
    for name, value in (
        ("enabled", _enabled),
        ("benchmark", _benchmark),
        ("benchmark_limit", _benchmark_limit),
        ("deterministic", _deterministic),
        ("allow_tf32", _allow_tf32),
        ("fp32_precision", _fp32_precision),
    ):
        if value is not None:
            setattr(mod, name, value)
    return old


@contextlib.contextmanager
def flags(
    enabled=False,
    benchmark=False,
    benchmark_limit=10,
    deterministic=False,
    allow_tf32=True,
    fp32_precision="none",
    depthwise_kernel="auto",
):
    """Set the flags inside a ``with`` block, restoring them after."""
    old = set_flags(enabled, benchmark, benchmark_limit, deterministic, allow_tf32, fp32_precision)
    try:
        yield
    finally:
        set_flags(*old)
