"""``ember.cuda.nvtx``: NVTX ranges and marks for profilers (Nsight), through CuPy."""

from __future__ import annotations

import contextlib

__all__ = ["range_push", "range_pop", "range_start", "range_end", "mark", "range"]


def _nvtx():
    from ..backend import _cupy

    if _cupy.cupy is None:
        raise RuntimeError("NVTX functions not installed. Are you sure you have a CUDA build?")
    from cupy.cuda import nvtx  # pragma: no cover - GPU

    return nvtx  # pragma: no cover


def range_push(msg: str) -> int:
    """Open a nested range; returns its depth (0-based)."""
    _nvtx().RangePush(msg)
    return 0  # pragma: no cover - GPU


def range_pop() -> int:
    _nvtx().RangePop()
    return 0  # pragma: no cover - GPU


def range_start(msg: str) -> int:
    """Start a range; returns an id for ``range_end`` (CuPy has nested ranges only, so
    ranges must end in reverse order of their start)."""
    range_push(msg)
    return 0  # pragma: no cover - GPU


def range_end(range_id: int) -> None:
    range_pop()


def mark(msg: str) -> None:
    _nvtx().Mark(msg)


@contextlib.contextmanager
def range(msg: str, *args, **kwargs):
    """``with ember.cuda.nvtx.range("step {}", i):`` - a range around the block."""
    range_push(msg.format(*args, **kwargs))
    try:
        yield
    finally:
        range_pop()
