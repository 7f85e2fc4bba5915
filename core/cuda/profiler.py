"""``ember.cuda.profiler``: start/stop the CUDA profiler (nsys/ncu capture ranges)."""

from __future__ import annotations

import contextlib

from ._lazy import cupy_or_raise

__all__ = ["start", "stop", "profile", "init"]


def init(output_file=None, flags=None, output_mode=None) -> None:
    """Legacy nvprof configuration: nothing to configure with modern profilers."""
    cupy_or_raise()


def start() -> None:
    cupy_or_raise().cuda.profiler.start()  # pragma: no cover - GPU


def stop() -> None:
    cupy_or_raise().cuda.profiler.stop()  # pragma: no cover - GPU


@contextlib.contextmanager
def profile():
    try:
        start()
        yield
    finally:
        stop()
