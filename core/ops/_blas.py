"""BLAS threads for loops of small matrix products (the steps of a recurrence), by measurement.

A recurrence runs one small GEMM per time step (e.g. 32x256 @ 256x1024). On an idle machine a
multithreaded BLAS does such a product faster (LSTM 32x256, 64 steps, forward and backward on
2 cores: 33-35 ms with 2 threads, 43-45 ms with 1), but when the other cores are busy its
threads wait for each other at every product and it collapses (2 threads took 1.2-3.0 ms per
32x256x1024 product against 0.2-0.5 ms on one thread, and a small character-LSTM training step
went from 24 ms to 490 ms). Neither choice is safe up front, so ``step_blas`` measures:

* each loop runs in one mode, the full pool ("multi") or one thread ("serial"), and reports
  its mean time per step; the next loop of that size takes the faster mode;
* every ``EXPLORE_EVERY``-th loop re-measures the other mode, since the load changes;
* a multi step slower than ``GUARD`` times the serial estimate switches the rest of the loop
  to serial, so a busy machine costs a few slow steps, not a slow loop.

Loops whose per-step product is large (``SERIAL_FLOPS`` and up) keep the pool: threads pay off
there whatever the load. Uses ``threadpoolctl`` (it comes with scikit-learn); without it the
BLAS keeps its configured thread count.
"""

from __future__ import annotations

import time

import numpy as np

from ..backend.threads import num_threads

# Per-step products from this many flops keep the full pool (32x256x1024x2 is 2**24).
SERIAL_FLOPS = 2**25
EXPLORE_EVERY = 16
GUARD = 2.0
_EMA = 0.3  # weight of the newest loop in the per-mode estimates

_controller = None  # a threadpoolctl.ThreadpoolController once created; False if unavailable
_estimates: dict = {}  # (kind, flops per step) -> _Estimate


def _get_controller():
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        except Exception:  # not installed, or no BLAS found: nothing to limit
            _controller = False
    return _controller


class _Estimate:
    __slots__ = ("serial", "multi", "loops")

    def __init__(self) -> None:
        self.serial: float | None = None  # seconds per step
        self.multi: float | None = None
        self.loops = 0

    def choose(self) -> str:
        self.loops += 1
        if self.serial is None:
            return "serial"  # the safe mode first: it also arms the guard for multi
        if self.multi is None:
            return "multi"
        best = "multi" if self.multi < self.serial else "serial"
        if self.loops % EXPLORE_EVERY == 0:
            return "serial" if best == "multi" else "multi"
        return best

    def record(self, mode: str, per_step: float) -> None:
        old = getattr(self, mode)
        setattr(self, mode, per_step if old is None else (1 - _EMA) * old + _EMA * per_step)


class _Stepper:
    """The loop's clock: call ``tick()`` after every step (see ``step_blas``)."""

    def __init__(self, est: _Estimate, mode: str, controller) -> None:
        self.est, self.mode, self.controller = est, mode, controller
        self.limiter = None
        self.steps = {"serial": 0, "multi": 0}
        self.spent = {"serial": 0.0, "multi": 0.0}
        self.last = 0.0

    def __enter__(self) -> _Stepper:
        if self.mode == "serial":
            self._go_serial()
        self.last = time.perf_counter()
        return self

    def _go_serial(self) -> None:
        self.limiter = self.controller.limit(limits=1, user_api="blas")
        self.mode = "serial"

    def tick(self) -> None:
        now = time.perf_counter()
        dt, self.last = now - self.last, now
        self.steps[self.mode] += 1
        self.spent[self.mode] += dt
        if self.mode == "multi" and self.est.serial is not None and dt > GUARD * self.est.serial:
            self._go_serial()  # the machine got busy: finish this loop on one thread

    def __exit__(self, *exc) -> None:
        if self.limiter is not None:
            self.limiter.restore_original_limits()
        for mode in ("serial", "multi"):
            if self.steps[mode]:
                self.est.record(mode, self.spent[mode] / self.steps[mode])


class _NoStepper:
    """For loops whose BLAS threading is left alone."""

    def __enter__(self) -> _NoStepper:
        return self

    def tick(self) -> None:
        pass

    def __exit__(self, *exc) -> None:
        pass


_NO_STEPPER = _NoStepper()


def step_blas(xp, flops_per_step: int, kind: str):
    """A context for a loop of small products: ``with step_blas(xp, flops, kind) as s:`` and
    ``s.tick()`` after each step. It picks the BLAS thread count by measurement (see the module
    docstring), kept per ``kind`` of loop (e.g. ``"lstm-bwd"``) and product size."""
    if xp is not np or flops_per_step >= SERIAL_FLOPS or num_threads() < 2:
        return _NO_STEPPER
    controller = _get_controller()
    if not controller:
        return _NO_STEPPER
    est = _estimates.setdefault((kind, int(flops_per_step)), _Estimate())
    return _Stepper(est, est.choose(), controller)
