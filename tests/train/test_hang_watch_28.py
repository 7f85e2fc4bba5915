"""The Trainer's progress watchdog, ``FailureConfig(worker_hang_timeout_s=...)`` (issue #28):
a worker stuck outside any collective fails the attempt with every rank's Python stacks, and
the group restarts or raises per the failure policy, instead of ``fit()`` hanging forever."""

from __future__ import annotations

import os
import time

import pytest

from ember.distributed.train import FailureConfig, RunConfig, ScalingConfig, Trainer
from ember.distributed.train._internal.hang_watch import Beat, HangWatch, python_stacks


class _Info:
    def __init__(self, rank):
        self.node_ip, self.pid = "10.0.0.1", 1000 + rank


class _Inbox:
    want_stacks = False


def test_hang_watch_names_the_still_rank_and_collects_stacks():
    clock = [0.0]
    inbox = _Inbox()
    watch = HangWatch(2.0, [_Info(0), _Info(1)], inbox, clock=lambda: clock[0])
    for k in range(6):  # rank 0 progresses; rank 1 stopped 1 s before the watch started
        clock[0] = k * 0.5
        watch.take(Beat(0, 0.1))
        watch.take(Beat(1, 1.0 + clock[0]))
        if clock[0] < 1.0:
            assert watch.check() is None and not inbox.want_stacks
    assert watch.check() is None  # found: now waiting for the stacks
    assert inbox.want_stacks
    watch.take(Beat(0, 0.1, "Thread 0x1 (most recent call first):\n  File a.py, line 3 in f"))
    watch.take(Beat(1, 3.6, "Thread 0x2 (most recent call first):\n  File b.py, line 9 in g"))
    rank, node, pid, detail = watch.check()
    assert (rank, node, pid) == (1, "10.0.0.1", 1001)
    assert "rank 1 (node 10.0.0.1, pid 1001) made no progress" in detail
    assert "for 3.6 s, over FailureConfig.worker_hang_timeout_s=2" in detail  # when named
    assert detail.index("--- rank 0 ---") < detail.index("a.py") < detail.index("--- rank 1 ---")
    assert detail.index("b.py") > detail.index("--- rank 1 ---")
    assert not inbox.want_stacks


def test_hang_watch_names_the_longest_idle_first():
    # both still within one beat: the rank waiting in a collective entered it after its hung
    # peer stopped, so the peer is named (each rank measures its idle time on its own clock)
    watch = HangWatch(1.0, [_Info(0), _Info(1)], _Inbox(), clock=lambda: 5.0)
    watch.take(Beat(0, 1.2))
    watch.take(Beat(1, 1.9))
    assert watch.check() is None
    watch.take(Beat(0, 1.2, "waiting in all_reduce"))
    watch.take(Beat(1, 1.9, "sleeping"))
    rank, _, _, detail = watch.check()
    assert rank == 1 and "also still: rank 0 (1.2 s)" in detail


def test_hang_watch_names_the_rank_outside_a_collective():
    # rank 0 entered the next collective before the slower rank 1 reached its last report()
    # and stopped there: rank 0 is still longer, but it waits for rank 1, which is the cause;
    # rank 1 passes the timeout only while the stacks are collected
    clock = [3.0]
    watch = HangWatch(2.0, [_Info(0), _Info(1)], _Inbox(), clock=lambda: clock[0])
    watch.take(Beat(0, 2.1, in_collective=True))
    watch.take(Beat(1, 1.9))
    assert watch.check() is None  # rank 0 found still: stacks asked for
    clock[0] = 3.5
    watch.take(Beat(0, 2.6, "waiting in all_reduce", in_collective=True))
    watch.take(Beat(1, 2.4, "sleeping"))
    rank, _, _, detail = watch.check()
    assert rank == 1 and "also still: rank 0 (2.6 s)" in detail


def test_hang_watch_reports_a_silent_rank_without_stacks():
    clock = [0.0]
    watch = HangWatch(1.0, [_Info(0), _Info(1)], _Inbox(), clock=lambda: clock[0])
    watch.take(Beat(0, 0.0))
    watch.take(Beat(1, 0.0))  # then rank 1 falls silent (its process is frozen)
    clock[0] = 1.5
    watch.take(Beat(0, 0.1))
    assert watch.check() is None  # rank 1 idle 1.5 s by the driver's clock; stacks asked for
    clock[0] = 1.5 + 3 * watch.interval + 2.1  # rank 1 never answers
    watch.take(Beat(0, 0.1, "stack of rank 0"))
    rank, _, _, detail = watch.check()
    assert rank == 1 and "stack of rank 0" in detail
    assert "(no answer: the process does not respond)" in detail


def test_python_stacks_show_every_thread():
    text = python_stacks()
    assert "most recent call first" in text and "test_python_stacks_show_every_thread" in text


@pytest.mark.parametrize("bad", [0, -1.0, "5", True])
def test_failure_config_rejects_bad_hang_timeout(bad):
    with pytest.raises(ValueError, match="worker_hang_timeout_s must be a positive number"):
        FailureConfig(worker_hang_timeout_s=bad)


def _hangs_once(config):
    import ember
    import ember.distributed as dist
    from ember.distributed.train import get_context, report

    rank = get_context().get_world_rank()
    marker = os.path.join(config["dir"], "hung")
    for step in range(3):
        dist.all_reduce(ember.ones(2))
        report({"step": step})
        if step == 1 and rank == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            time.sleep(600)  # stuck outside any collective: the watch must find it


@pytest.mark.usefixtures("ray_session")
@pytest.mark.parametrize(
    "max_failures", [0, pytest.param(1, marks=pytest.mark.full)], ids=["raise", "restart"]
)
def test_trainer_hang_fails_with_stacks_or_restarts(tmp_path, max_failures):
    from ember.distributed.train import TrainingFailedError

    trainer = Trainer(
        _hangs_once,
        train_loop_config={"dir": str(tmp_path)},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(
            storage_path=str(tmp_path),
            verbose=0,
            log_to_tensorboard=False,
            failure_config=FailureConfig(max_failures=max_failures, worker_hang_timeout_s=2.0),
        ),
    )
    t0 = time.monotonic()
    if max_failures == 0:
        with pytest.raises(TrainingFailedError) as err:
            trainer.fit()
        text = str(err.value)
        assert "Training failed on rank 1" in text and "made no progress" in text
        # every rank's stacks: rank 1 in its sleep, rank 0 waiting in the next all_reduce
        stacks = text.split("--- rank 1 ---")[1]
        assert "_hangs_once" in stacks and "--- rank 0 ---" in text
        assert "all_reduce" in text.split("--- rank 0 ---")[1].split("--- rank 1 ---")[0]
    else:
        result = trainer.fit()
        # the first attempt's two reports, then the restarted group's full run (no checkpoint)
        assert [m["step"] for m in result.metrics_history] == [0, 1, 0, 1, 2]
    assert time.monotonic() - t0 < 300  # the sleep is 600 s: found by the watch
