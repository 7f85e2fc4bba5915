"""Elastic training with the Trainer: ``ScalingConfig(num_workers=(min, max))`` on a real Ray
cluster whose "hosts" (extra raylets, ``_elastic_nodes.py``) join and leave mid-run.

What "equal" means here: each step trains on one global batch of 8 rows, split evenly over the
current world size; DDP averages the ranks' gradients, so every step's update is the gradient of
the global batch's mean loss whatever the world size. The reference is that same sequence of
steps run in one process; the elastic run's final weights must match it to
``atol=1e-6, rtol=0`` (not bitwise: the ranks' partial sums are added in another order).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from _elastic_nodes import CpuHost, Host, SlotNodes  # tests/train is on sys.path (rootdir conftest)

from ember.distributed.train import (
    Checkpoint,
    FailureConfig,
    RunConfig,
    ScalingConfig,
    Trainer,
    TrainingFailedError,
    get_checkpoint,
    get_context,
    prepare_model,
    report,
)
from ember.distributed.train._internal.elastic import (
    ElasticCapacityError,
    _reserve_pending,
    free_slots,
)

GLOBAL_BATCH = 8


def _net():
    import ember.nn as nn

    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def _batch(step: int):
    rng = np.random.default_rng(100 + step)
    x = rng.standard_normal((GLOBAL_BATCH, 4)).astype(np.float32)
    y = (np.sin(x).sum(axis=1, keepdims=True) * 0.5).astype(np.float32)
    return x, y


def _loop(config):
    import ray

    import ember
    import ember.nn.functional as F

    ctx = get_context()
    world, rank = ctx.get_world_size(), ctx.get_world_rank()
    ember.manual_seed(0)
    model = prepare_model(_net())
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    start = 0
    ckpt = get_checkpoint()
    if ckpt is not None:  # DDP state is the same at every world size: it just loads
        with ckpt.as_directory() as d:
            state = ember.load(os.path.join(d, "state.pt"))
        getattr(model, "module", model).load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["step"] + 1
    marks = config["markers"]
    for step in range(start, config["steps"]):
        lose = os.path.join(marks, "lose_request")
        if step == config.get("lose_at") and world == 2 and rank == 1:
            if not os.path.exists(lose):
                with open(lose + ".tmp", "w") as f:
                    f.write(f"{ray.get_runtime_context().get_node_id()} {os.getpid()}")
                os.replace(lose + ".tmp", lose)
                time.sleep(600)  # this host is taken away under the worker
        x, y = _batch(step)
        part = GLOBAL_BATCH // world
        rows = slice(rank * part, (rank + 1) * part)
        opt.zero_grad()
        loss = F.mse_loss(model(ember.tensor(x[rows])), ember.tensor(y[rows]))
        loss.backward()
        opt.step()
        if step == config.get("grow_at") and world == 1 and rank == 0:
            open(os.path.join(marks, "grow_request"), "w").close()
            while not os.path.exists(os.path.join(marks, "grow_done")):
                time.sleep(0.05)  # the new host has joined before this checkpoint
        with _tmpdir() as d:
            ck = None
            if rank == 0:
                inner = getattr(model, "module", model)
                state = {"model": inner.state_dict(), "opt": opt.state_dict(), "step": step}
                ember.save(state, os.path.join(d, "state.pt"))
                ck = Checkpoint.from_directory(d)
            report({"step": step, "world_size": world}, checkpoint=ck)


def _tmpdir():
    import tempfile

    return tempfile.TemporaryDirectory()


def _reference(steps: int) -> dict:
    import ember
    import ember.nn.functional as F

    ember.manual_seed(0)
    model = _net()
    opt = ember.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for step in range(steps):
        x, y = _batch(step)
        opt.zero_grad()
        F.mse_loss(model(ember.tensor(x)), ember.tensor(y)).backward()
        opt.step()
    return {k: v.numpy() for k, v in model.state_dict().items()}


@pytest.fixture
def slot_nodes(ray_session):
    nodes = SlotNodes(f"ember_elastic_{os.getpid()}")
    yield nodes
    nodes.remove_all()


def _fit(tmp_path, name, config, make_host, resources=None, max_failures=1):
    markers = tmp_path / f"markers_{name}"
    markers.mkdir()
    trainer = Trainer(
        _loop,
        {**config, "markers": str(markers)},
        scaling_config=ScalingConfig(num_workers=(1, 2), resources_per_worker=resources),
        run_config=RunConfig(
            storage_path=str(tmp_path),
            name=name,
            verbose=0,
            failure_config=FailureConfig(max_failures),
        ),
        collective_timeout=60,
    )
    trainer.elastic_wait_s = 30.0
    with make_host(str(markers)) as host:
        result = trainer.fit()
    assert host.error is None, host.error
    return trainer, result


def _final_weights(result) -> dict:
    import ember

    state = ember.load(os.path.join(result.checkpoint.path, "state.pt"))
    return {k: v.numpy() for k, v in state["model"].items()}


def _check_grow_then_shrink(trainer, result, steps):
    history = result.metrics_history
    assert [m["step"] for m in history] == list(range(steps))
    # 1 worker; a host joins, the group grows at step 1's checkpoint; the host of rank 1 is
    # lost at step 4 and the group goes on with 1 from step 3's checkpoint
    assert [m["world_size"] for m in history] == [1, 1, 2, 2, 1, 1]
    assert trainer._world_sizes == [1, 2, 1]
    want, got = _reference(steps), _final_weights(result)
    assert sorted(want) == sorted(got)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=1e-6, err_msg=k)


GROW_SHRINK = {"steps": 6, "grow_at": 1, "lose_at": 4}


@pytest.mark.slow
def test_grows_when_cpus_free_up_then_shrinks_when_they_are_taken(tmp_path, ray_session):
    # one node: CPUs held by placement groups stand for the hosts that are not there
    trainer, result = _fit(
        tmp_path, "cpus", GROW_SHRINK, lambda markers: CpuHost(markers, free_slots=1)
    )
    _check_grow_then_shrink(trainer, result, GROW_SHRINK["steps"])


@pytest.mark.slow
@pytest.mark.full
def test_grows_when_a_host_joins_then_shrinks_when_it_is_lost(tmp_path, slot_nodes):
    slot_nodes.add()  # one host: the run starts with 1 worker of (1, 2)
    trainer, result = _fit(
        tmp_path,
        "hosts",
        GROW_SHRINK,
        lambda markers: Host(slot_nodes, markers),
        resources={"CPU": 0, slot_nodes.resource: 1},
    )
    _check_grow_then_shrink(trainer, result, GROW_SHRINK["steps"])


@pytest.mark.slow
@pytest.mark.full
def test_a_shrink_counts_against_max_failures(tmp_path, slot_nodes):
    slot_nodes.add()
    slot_nodes.add()
    with pytest.raises(TrainingFailedError, match="1 failure\\(s\\) with max_failures=0"):
        _fit(
            tmp_path,
            "no_retry",
            {"steps": 4, "lose_at": 1},
            lambda markers: Host(slot_nodes, markers),
            resources={"CPU": 0, slot_nodes.resource: 1},
            max_failures=0,
        )


@pytest.mark.slow
def test_fewer_than_min_fit_is_an_error_naming_the_resources(tmp_path, ray_session):
    trainer = Trainer(
        _loop,
        {"steps": 1, "markers": str(tmp_path)},
        scaling_config=ScalingConfig(
            num_workers=(2, 3), resources_per_worker={"CPU": 0, "ember_no_such_host": 1}
        ),
        run_config=RunConfig(storage_path=str(tmp_path), name="too_few", verbose=0),
    )
    trainer.elastic_wait_s = 0.0
    with pytest.raises(ElasticCapacityError) as info:
        trainer.fit()
    msg = str(info.value)
    assert "at least 2 workers (range 2..3)" in msg
    assert "{'ember_no_such_host': 1}" in msg and "room for 0" in msg and "Free now: node" in msg


@pytest.mark.parametrize(
    "num_workers, match",
    [
        ((3, 2), "min <= max, got min=3 > max=2"),
        ((0, 2), "min >= 1, got min=0"),
        ((1, 2, 3), r"a \(min, max\) pair of ints, got \(1, 2, 3\)"),
        (0, "positive int or a \\(min, max\\) pair, got 0"),
    ],
)
def test_bad_num_workers_names_the_values(num_workers, match):
    with pytest.raises(ValueError, match=match):
        ScalingConfig(num_workers=num_workers)


def test_scaling_config_range_properties():
    sc = ScalingConfig(num_workers=[2, 4])
    assert (sc.num_workers, sc.min_workers, sc.max_workers, sc.elastic) == ((2, 4), 2, 4, True)
    fixed = ScalingConfig(num_workers=3)
    assert (fixed.min_workers, fixed.max_workers, fixed.elastic) == (3, 3, False)


def test_free_slots_honours_the_placement_strategy():
    free = {
        "a": {"CPU": 4.0, "GPU": 1.0},
        "b": {"CPU": 1.5},
        "c": {"CPU": 2.0, "GPU": 2.0},
    }
    one_cpu = {"CPU": 1}
    assert free_slots(one_cpu, "PACK", free=free) == 4 + 1 + 2
    assert free_slots(one_cpu, "STRICT_SPREAD", free=free) == 3
    assert free_slots(one_cpu, "STRICT_SPREAD", exclude_nodes={"a"}, free=free) == 2
    assert free_slots(one_cpu, "STRICT_PACK", free=free) == 4
    assert free_slots({"CPU": 1, "GPU": 1}, "SPREAD", free=free) == 1 + 0 + 2
    # whole nodes with room for 2 workers each (the launcher's --nproc-per-node 2)
    assert free_slots(one_cpu, "SPREAD", per_node=2, free=free) == 2


def test_pending_placement_groups_keep_the_room_they_asked_for():
    # a job's pending group asked for the CPU a killed worker frees first: the re-formed group
    # must not count it (CI saw the group grow back into a lost host's CPU)
    free = {"a": {"CPU": 2.0}, "b": {"CPU": 1.0, "GPU": 1.0}}
    pending = [{0: {"CPU": 1.0}}, {0: {"CPU": 1.0, "GPU": 1.0}}, {0: {"TPU": 1.0}}]
    left = _reserve_pending({k: dict(v) for k, v in free.items()}, pending)
    assert left == {"a": {"CPU": 1.0}, "b": {"CPU": 0.0, "GPU": 0.0}}  # TPU fits nowhere: ignored
    assert free_slots({"CPU": 1}, "PACK", free=left) == 1


@pytest.mark.slow
@pytest.mark.full
def test_docs_elastic_example_runs(tmp_path, monkeypatch, ray_session, capsys):
    import pathlib
    import re

    doc = pathlib.Path(__file__).resolve().parents[2] / "docs" / "trainer.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), flags=re.S)
    block = next(b for b in blocks if "num_workers=(1, 2)" in b)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "docs/trainer.md[elastic]", "exec"), {"__name__": "__doc__"})
    assert capsys.readouterr().out.strip() == "[2, 2, 2, 2]"


def test_form_group_takes_what_fits_one_smaller_on_a_failed_placement(monkeypatch):
    from ember.distributed.train._internal import elastic

    free = {"a": {"CPU": 2.0}, "b": {"CPU": 1.0}}
    monkeypatch.setattr(elastic, "_per_node_free", lambda: free)
    tried = []

    def make(n, timeout):
        tried.append(n)
        if n == 3:  # counted, but a node went away before the placement
            raise elastic._PlacementTimeout("could not place")
        return n

    got = elastic.form_group(make, {"CPU": 1}, "PACK", 1, 4, settle_s=0.0, wait_s=0.0)
    assert (got, tried) == (2, [3, 2])
    with pytest.raises(ElasticCapacityError) as info:
        elastic.form_group(make, {"CPU": 2}, "PACK", 2, 4, settle_s=0.0, wait_s=0.0)
    msg = str(info.value)
    assert "at least 2 workers (range 2..4) of {'CPU': 2}" in msg and "room for 1" in msg
    assert "node a: {'CPU': 2}; node b: {'CPU': 1}" in msg
