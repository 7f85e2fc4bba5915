"""``ember.cuda.nccl``: the NCCL version and availability, as ``torch.cuda.nccl``.

PyTorch's single-process multi-GPU collectives here (``all_reduce`` over a list of tensors, one
per GPU) are not implemented: ember's collectives are ``ember.distributed``'s, one process per
device. Without CUDA (PyTorch's CPU build) ``version()`` raises and ``is_available`` is False.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["all_reduce", "reduce", "broadcast", "all_gather", "reduce_scatter", "version"]


def _nccl():
    from ..backend import _cupy

    if _cupy.cupy is None:
        return None
    try:  # pragma: no cover - GPU
        from cupy.cuda import nccl

        return nccl if getattr(nccl, "available", True) else None
    except ImportError:  # pragma: no cover - GPU
        return None


def version() -> tuple[int, int, int]:
    """The NCCL version as ``(major, minor, patch)``; raises without NCCL (a CPU build)."""
    nccl = _nccl()
    if nccl is None:
        raise RuntimeError("ember.cuda.nccl.version: NCCL is not available (no CUDA / CuPy NCCL)")
    v = nccl.get_version()  # pragma: no cover - GPU
    return (
        (v // 10000, (v // 100) % 100, v % 100)
        if v >= 10000
        else (v // 1000, (v // 100) % 10, v % 100)
    )  # pragma: no cover


def is_available(tensors: Sequence) -> bool:
    """Whether NCCL could run on ``tensors``: dense, contiguous CUDA tensors with NCCL present."""
    if _nccl() is None:
        return False
    return all(  # pragma: no cover - GPU
        t.is_cuda and not t.is_sparse and t.is_contiguous() for t in tensors
    )


def _single_process(name: str):
    def fn(*args, **kwargs):
        raise NotImplementedError(
            f"ember.cuda.nccl.{name}: single-process multi-GPU collectives are not implemented; "
            f"use ember.distributed.{name} with one process per device"
        )

    fn.__name__ = name
    return fn


all_reduce = _single_process("all_reduce")
reduce = _single_process("reduce")
broadcast = _single_process("broadcast")
all_gather = _single_process("all_gather")
reduce_scatter = _single_process("reduce_scatter")
