"""Trainer mechanics on real Ray actors: ranks, env, reports, checkpoints, failures."""

import os
import signal
import tempfile

import pytest

from ember.distributed.train import (
    Checkpoint,
    CheckpointConfig,
    FailureConfig,
    Result,
    RunConfig,
    ScalingConfig,
    Trainer,
    TrainingFailedError,
    get_checkpoint,
    get_context,
    report,
)

pytestmark = pytest.mark.usefixtures("ray_session")


def _env_loop():
    ctx = get_context()
    env = {
        k: os.environ[k]
        for k in (
            "RANK",
            "LOCAL_RANK",
            "WORLD_SIZE",
            "LOCAL_WORLD_SIZE",
            "NODE_RANK",
            "MASTER_ADDR",
            "MASTER_PORT",
            "EMBER_TOKEN",
        )
    }
    report({"rank": ctx.get_world_rank(), "world": ctx.get_world_size(), **env})


def test_ranks_and_torchrun_variables(tmp_path):
    result = Trainer(
        _env_loop,
        scaling_config=ScalingConfig(num_workers=3),
        run_config=RunConfig(storage_path=str(tmp_path), name="env", verbose=0),
        backend=None,
    ).fit()
    m = result.metrics
    assert m["rank"] == 0 and m["world"] == 3
    assert m["RANK"] == "0" and m["WORLD_SIZE"] == "3" and m["LOCAL_WORLD_SIZE"] == "3"
    assert m["NODE_RANK"] == "0" and int(m["MASTER_PORT"]) > 0 and len(m["EMBER_TOKEN"]) >= 32


def _ckpt_loop(config):
    ctx = get_context()
    ckpt = get_checkpoint()
    start = 0
    if ckpt is not None:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, "step.txt")) as f:
                start = int(f.read())
    for step in range(start, config["steps"]):
        d = tempfile.mkdtemp()
        if ctx.get_world_rank() == 0:
            with open(os.path.join(d, "step.txt"), "w") as f:
                f.write(str(step + 1))
        with open(os.path.join(d, f"shard_{ctx.get_world_rank()}.txt"), "w") as f:
            f.write(str(step))
        if step == config.get("crash_at") and not os.path.exists(config["marker"]):
            open(config["marker"], "w").close()
            if config.get("sigkill"):
                os.kill(os.getpid(), signal.SIGKILL)
            raise ValueError("injected failure")
        report({"step": step, "score": (step * 7) % 5}, checkpoint=Checkpoint.from_directory(d))


def test_checkpoints_merge_ranks_and_keep_best(tmp_path):
    cfg = CheckpointConfig(
        num_to_keep=2, checkpoint_score_attribute="score", checkpoint_score_order="max"
    )
    result = Trainer(
        _ckpt_loop,
        {"steps": 5},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(
            storage_path=str(tmp_path), name="ck", checkpoint_config=cfg, verbose=0
        ),
        backend=None,
    ).fit()
    assert [m["step"] for m in result.metrics_history] == [0, 1, 2, 3, 4]
    assert sorted(os.listdir(result.checkpoint.path)) == ["shard_0.txt", "shard_1.txt", "step.txt"]
    kept = sorted(d for d in os.listdir(result.path) if d.startswith("checkpoint_"))
    # scores: 0, 2, 4, 1, 3 -> the best two are steps 2 and 4 (the latest, step 4, is one)
    assert kept == ["checkpoint_000002", "checkpoint_000004"]
    assert result.best_checkpoints[0][1]["score"] == 4
    restored = Result.from_path(result.path)
    assert restored.checkpoint == result.checkpoint
    assert [m["step"] for m in restored.metrics_history] == [0, 1, 2, 3, 4]


# SIGKILL recovery also runs in CI through tests/train/test_recovery.py and
# tests/test_ddp_examples.py; the sigkill case here (~70 s) runs with EMBER_FULL_TESTS=1.
@pytest.mark.parametrize("sigkill", [False, pytest.param(True, marks=pytest.mark.full)])
def test_failure_restarts_from_latest_checkpoint(tmp_path, sigkill):
    cfg = {"steps": 4, "crash_at": 2, "marker": str(tmp_path / "crashed"), "sigkill": sigkill}
    result = Trainer(
        _ckpt_loop,
        cfg,
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(
            storage_path=str(tmp_path),
            name="ft",
            verbose=0,
            failure_config=FailureConfig(max_failures=1),
        ),
        backend=None,
    ).fit()
    assert [m["step"] for m in result.metrics_history] == [0, 1, 2, 3]
    with open(os.path.join(result.checkpoint.path, "step.txt")) as f:
        assert f.read() == "4"


def _failing_loop():
    import time

    def inner_helper():
        raise KeyError("the worker's own message")

    if get_context().get_world_rank() == 1:
        time.sleep(0.5)
        inner_helper()
    end = time.monotonic() + 2.0
    while time.monotonic() < end:  # reports keep coming while the driver handles the failure
        report({"ok": 1})


def _failure_message(loop, tmp_path) -> str:
    """The TrainingFailedError's message of a 2-worker run of ``loop`` with no restarts."""
    with pytest.raises(TrainingFailedError) as info:
        Trainer(
            loop,
            scaling_config=ScalingConfig(num_workers=2),
            run_config=RunConfig(storage_path=str(tmp_path), verbose=0),
            backend=None,
        ).fit()
    return str(info.value)


# One run shows both: the failing worker's own traceback, and that rank 0, which keeps
# reporting (through the socket inbox) while the driver handles rank 1's failure, is not blamed.
def test_failure_without_restarts_shows_worker_traceback_not_a_reporting_peer(tmp_path):
    msg = _failure_message(_failing_loop, tmp_path)
    assert "rank 1" in msg and "inner_helper" in msg and "the worker's own message" in msg, msg
    assert "1 failure(s)" in msg, msg[-2000:]


def _reporting_while_a_peer_fails():
    import time

    if get_context().get_world_rank() == 1:
        time.sleep(0.5)
        raise KeyError("rank 1's own failure")
    end = time.monotonic() + 2.0
    while time.monotonic() < end:  # reports keep coming while the driver handles the failure
        report({"ok": 1})


# The socket inbox's case runs in CI within the test above; the actor inbox's with
# EMBER_FULL_TESTS=1 (its reports are covered by the Ray Client test at the end of this file).
@pytest.mark.full
def test_a_healthy_rank_reporting_during_a_failure_is_not_blamed_actor_inbox(tmp_path, monkeypatch):
    from ember.distributed.train import reports

    monkeypatch.setattr(reports, "_workers_can_connect", lambda: False)
    msg = _failure_message(_reporting_while_a_peer_fails, tmp_path)
    assert "rank 1" in msg and "rank 1's own failure" in msg, msg[-2000:]


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="num_workers"):
        ScalingConfig(num_workers=0)
    with pytest.raises(ValueError, match="placement_strategy"):
        ScalingConfig(placement_strategy="RANDOM")
    with pytest.raises(ValueError, match="strategy"):
        Trainer(_env_loop, strategy="magic")
    with pytest.raises(ValueError, match="checkpoint_score_order"):
        CheckpointConfig(checkpoint_score_order="up")


def test_same_name_gets_a_fresh_directory_and_restore_continues(tmp_path):
    rc = RunConfig(storage_path=str(tmp_path), name="again", verbose=0)
    first = Trainer(_ckpt_loop, {"steps": 2}, run_config=rc, backend=None).fit()
    second = Trainer(_ckpt_loop, {"steps": 2}, run_config=rc, backend=None).fit()
    assert first.path != second.path and second.path.endswith("again_1")
    assert [m["step"] for m in second.metrics_history] == [0, 1]
    restored = Trainer.restore(
        first.path, _ckpt_loop, {"steps": 4}, backend=None, run_config=RunConfig(verbose=0)
    ).fit()
    assert restored.path == first.path
    assert [m["step"] for m in restored.metrics_history] == [0, 1, 2, 3]
    with pytest.raises(FileNotFoundError, match="not an ember run directory"):
        Trainer.restore(str(tmp_path), _ckpt_loop)


def _reports(events):
    from ember.distributed.train.reports import queued_reports

    return queued_reports(events)


def test_actor_inbox_queues_in_order_and_close_ends_its_wait():
    import queue

    from ember.distributed.train.reports import ActorInbox

    # nothing sent: close() still ends the outstanding next() and returns
    events = queue.Queue()
    inbox = ActorInbox(events)
    inbox.close()
    assert _reports(events) == [] and not inbox._pump.is_alive()
    # sent before and while the pump waits: all queued, in order, by the time close() returns
    events = queue.Queue()
    inbox = ActorInbox(events)
    client = inbox.client()
    for item in ("a", "b", "c", "d"):
        client.put(item)
    inbox.close()
    assert _reports(events) == ["a", "b", "c", "d"]


def test_socket_inbox_round_trip_token_and_close(monkeypatch):
    import pickle
    import queue
    import threading

    from ember.distributed.train.reports import SocketInbox

    monkeypatch.setenv("EMBER_TOKEN", "the-job-token")
    monkeypatch.setenv("RANK", "0")
    events = queue.Queue()
    inbox = SocketInbox(events, "the-job-token", "127.0.0.1")
    client = pickle.loads(pickle.dumps(inbox.client()))  # it travels to the workers pickled
    big = os.urandom(8 << 20)  # a checkpoint's packed files
    client.put((0, 1, {"loss": 0.5}, big))
    assert _reports(events) == [(0, 1, {"loss": 0.5}, big)]  # queued before put() returned
    # several threads of one worker share its connection
    threads = [
        threading.Thread(target=lambda k=k: [client.put((k, i)) for i in range(20)])
        for k in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = _reports(events)
    assert sorted(got) == sorted((k, i) for k in range(3) for i in range(20))
    assert [i for k, i in got if k == 1] == list(range(20))  # each thread's own order kept
    # a worker of another job (wrong token) is refused, and says so
    monkeypatch.setenv("EMBER_TOKEN", "another-token")
    with pytest.raises(RuntimeError, match="refused this worker.*job tokens differ"):
        inbox.client().put("intruder")
    assert _reports(events) == []
    # after close() nothing more is taken, and report() says why
    monkeypatch.setenv("EMBER_TOKEN", "the-job-token")
    inbox.close()
    with pytest.raises(RuntimeError, match="did not take the report|could not connect"):
        client.put("late")
    assert _reports(events) == []


def test_reports_through_the_actor_inbox_for_a_ray_client_driver(tmp_path, monkeypatch):
    # a driver the workers cannot connect to (Ray Client) takes reports through an actor
    from ember.distributed.train import reports

    monkeypatch.setattr(reports, "_workers_can_connect", lambda: False)
    result = Trainer(
        _ckpt_loop,
        {"steps": 3},
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(storage_path=str(tmp_path), name="ac", verbose=0),
        backend=None,
    ).fit()
    assert [m["step"] for m in result.metrics_history] == [0, 1, 2]
    assert sorted(os.listdir(result.checkpoint.path)) == ["shard_0.txt", "shard_1.txt", "step.txt"]
