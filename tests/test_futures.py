"""``ember.futures`` (torch.futures' semantics) and its one ``Future`` class across ember."""

from __future__ import annotations

import threading

import pytest
import torch

import ember
from ember.futures import Future, collect_all, wait_all


def _both(make):
    """Run the same scenario on ember's and torch's futures."""
    return make(Future), make(torch.futures.Future)


def test_then_chains_and_errors_propagate_like_torch():
    def scenario(cls):
        f = cls()
        doubled = f.then(lambda x: x.value() * 2)
        broken = f.then(lambda x: 1 / 0)
        seen = []
        f.add_done_callback(lambda x: seen.append(x.value()))
        assert not f.done()
        f.set_result(21)
        with pytest.raises(RuntimeError, match="ZeroDivisionError: division by zero"):
            broken.wait()
        return doubled.wait(), seen, f.done()

    assert _both(scenario)[0] == _both(scenario)[1] == (42, [21], True)


def test_set_exception_raises_from_wait_and_value():
    f = Future()
    f.set_exception(ValueError("nope"))
    with pytest.raises(ValueError, match="nope"):
        f.wait()
    with pytest.raises(ValueError, match="nope"):
        f.value()
    assert f.done()
    with pytest.raises(RuntimeError, match="once"):
        f.set_result(1)
    with pytest.raises(TypeError, match="expects an exception"):
        Future().set_exception("not an error")


def test_callback_on_done_future_runs_at_once_and_wait_timeout():
    f = Future()
    f.set_result(3)
    got = []
    f.add_done_callback(lambda x: got.append(x.wait()))
    assert got == [3]
    with pytest.raises(TimeoutError):
        Future().wait(timeout=0.01)


def test_collect_all_and_wait_all():
    futs = [Future() for _ in range(3)]
    all_done = collect_all(futs)
    for i, f in enumerate(futs):
        threading.Timer(0.01 * i, f.set_result, args=(i,)).start()
    assert [f.wait() for f in all_done.wait()] == [0, 1, 2]
    assert wait_all(futs) == [0, 1, 2]
    bad = Future()
    bad.set_exception(KeyError("k"))
    with pytest.raises(KeyError):
        wait_all([futs[0], bad])
    assert collect_all([]).wait() == []
    with pytest.raises(TypeError, match="collect_all"):
        collect_all([1])
    t_futs = [torch.futures.Future() for _ in range(2)]
    for i, f in enumerate(t_futs):
        f.set_result(i)
    assert torch.futures.wait_all(t_futs) == wait_all(futs[:2])


def test_one_future_class_for_distributed_and_generic_annotation():
    import ember.distributed as dist

    assert dist.Future is Future and ember.futures.Future is Future
    assert Future[int] is not None  # torch's annotations: Future[Tensor]
