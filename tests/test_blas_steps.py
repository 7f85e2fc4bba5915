"""``step_blas``: how recurrences choose the BLAS thread count of their per-step products."""

from __future__ import annotations

import numpy as np
import pytest

from ember.ops import _blas


class _Limiter:
    def __init__(self, log):
        self.log = log

    def restore_original_limits(self):
        self.log.append("restore")


class _Controller:
    def __init__(self):
        self.log = []

    def limit(self, limits, user_api):
        assert (limits, user_api) == (1, "blas")
        self.log.append("serial")
        return _Limiter(self.log)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def fake(monkeypatch):
    controller, clock = _Controller(), _Clock()
    monkeypatch.setattr(_blas, "_controller", controller)
    monkeypatch.setattr(_blas, "num_threads", lambda: 2)
    monkeypatch.setattr(_blas, "_estimates", {})
    monkeypatch.setattr(_blas.time, "perf_counter", clock)
    return controller, clock


def _loop(step_times, clock, kind="k", flops=1000):
    with _blas.step_blas(np, flops, kind) as s:
        for dt in step_times:
            clock.now += dt
            s.tick()
    return _blas._estimates[(kind, flops)]


def test_serial_first_then_multi_then_the_faster(fake):
    controller, clock = fake
    est = _loop([1.0] * 4, clock)  # first loop: serial (safe), which arms the guard
    assert controller.log == ["serial", "restore"] and est.serial == 1.0 and est.multi is None
    _loop([0.5] * 4, clock)  # second loop: multi, never limited
    assert controller.log == ["serial", "restore"] and est.multi == 0.5
    _loop([0.5] * 4, clock)  # multi was faster: it stays
    assert controller.log == ["serial", "restore"]


def test_other_mode_is_remeasured_now_and_then(fake):
    controller, clock = fake
    _loop([1.0], clock)
    _loop([0.5], clock)
    modes = []
    for _ in range(2 * _blas.EXPLORE_EVERY):
        before = len(controller.log)
        _loop([0.5], clock)
        modes.append("serial" if len(controller.log) > before else "multi")
    assert modes.count("serial") == 2  # one exploration per EXPLORE_EVERY loops


def test_a_slow_multi_step_switches_the_rest_of_the_loop_to_one_thread(fake):
    controller, clock = fake
    _loop([1.0], clock)  # serial estimate: 1.0 per step
    est = _loop([0.5, 5.0, 1.0, 1.0], clock)  # multi; step 2 exceeds GUARD x serial
    assert controller.log == ["serial", "restore", "serial", "restore"]
    assert est.multi == pytest.approx(2.75)  # (0.5 + 5.0) / 2 steps in multi
    assert est.serial == pytest.approx(0.7 * 1.0 + 0.3 * 1.0)


def test_left_alone_when_there_is_nothing_to_choose(monkeypatch):
    monkeypatch.setattr(_blas, "num_threads", lambda: 1)
    assert _blas.step_blas(np, 1000, "k") is _blas._NO_STEPPER  # one thread
    monkeypatch.setattr(_blas, "num_threads", lambda: 2)
    assert _blas.step_blas(np, _blas.SERIAL_FLOPS, "k") is _blas._NO_STEPPER  # large products
    assert _blas.step_blas(object(), 1000, "k") is _blas._NO_STEPPER  # CuPy: not NumPy's BLAS
