"""Single-threaded BLAS for loops of small matrix products (the steps of a recurrence).

A recurrence runs one small GEMM per time step (e.g. 32x256 @ 256x1024). Multithreaded
OpenBLAS gains little on such sizes and loses badly when the cores are busy: measured on the
2-core machines, 2 threads took 1.2-3.0 ms per 32x256x1024 product against 0.2-0.5 ms on one
thread, and a small character-LSTM training step went from 24 ms to 490 ms. So the per-step loops
run with one BLAS thread when the per-step product is small; the large one-shot products (the
input projection, the weight gradients) keep every thread.

Uses ``threadpoolctl`` when it is installed (it comes with scikit-learn); without it this is a
no-op and the BLAS keeps its configured thread count.
"""

from __future__ import annotations

import contextlib

import numpy as np

# Products below this many flops per step run single-threaded (32x256x1024x2 is 2**24).
SERIAL_FLOPS = 2**25

_controller = None  # a threadpoolctl.ThreadpoolController once created; False if unavailable


def _get_controller():
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        except Exception:  # not installed, or no BLAS found: nothing to limit
            _controller = False
    return _controller


def serial_blas(xp, flops_per_step: int):
    """A context in which NumPy's BLAS runs on one thread if each step's product is small."""
    if xp is not np or flops_per_step >= SERIAL_FLOPS:
        return contextlib.nullcontext()
    controller = _get_controller()
    if not controller:
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")
