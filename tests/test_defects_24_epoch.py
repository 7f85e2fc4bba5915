"""Issue #24, defect 1: a prepared DataLoader uses the user's ``sampler.set_epoch(epoch)``, so
the standard resume idiom (set the epoch each epoch; checkpoint model, optimizer and epoch;
resume from ``get_checkpoint()``) reshuffles after a restart exactly as the uninterrupted run."""

import os
import signal
import tempfile

import numpy as np
import pytest

import ember
from ember.distributed.train import prepare_data_loader
from ember.utils.data import DataLoader, DistributedSampler, TensorDataset


def _dataset(n=24):
    return TensorDataset(ember.arange(n))


def _order(loader):
    return [int(v) for (b,) in loader for v in b.tolist()]


def _expected(epoch, n=24):
    s = DistributedSampler(_dataset(n), num_replicas=2, rank=1, shuffle=True, seed=5)
    s.set_epoch(epoch)
    return list(s)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_the_users_set_epoch_wins_over_the_pass_counter(num_workers):
    sampler = DistributedSampler(_dataset(), num_replicas=2, rank=1, shuffle=True, seed=5)
    loader = prepare_data_loader(
        DataLoader(_dataset(), batch_size=4, sampler=sampler, num_workers=num_workers),
        move_to_device=False,
    )
    # a resumed run: the loader is fresh (pass counter 0), the user starts at epoch 3
    for epoch in (3, 4):
        loader.sampler.set_epoch(epoch)
        assert _order(loader) == _expected(epoch)
    assert _expected(3) != _expected(0)


def test_a_constant_set_epoch_on_the_prepared_sampler_is_kept():
    from ember.distributed.train.prepare import _DistributedSampler

    # the sampler prepare_data_loader builds for world > 1 (here built directly: one process)
    sampler = _DistributedSampler(_dataset(), num_replicas=2, rank=1, shuffle=True, seed=5)
    loader = prepare_data_loader(
        DataLoader(_dataset(), batch_size=4, sampler=sampler), move_to_device=False
    )
    orders = []
    for _ in range(3):
        loader.sampler.set_epoch(0)  # the same value the loader would give the first pass
        orders.append(_order(loader))
    assert orders == [_expected(0)] * 3


def test_without_set_epoch_each_pass_still_gets_its_own_shuffle():
    sampler = DistributedSampler(_dataset(), num_replicas=2, rank=1, shuffle=True, seed=5)
    loader = prepare_data_loader(
        DataLoader(_dataset(), batch_size=4, sampler=sampler), move_to_device=False
    )
    assert [_order(loader) for _ in range(3)] == [_expected(e) for e in range(3)]


# ---- the standard idiom on real Ray workers, with one SIGKILL ------------------------------
def _loop(config):
    import ember.nn as nn
    import ember.nn.functional as F
    from ember.distributed.train import (
        Checkpoint,
        get_checkpoint,
        get_context,
        prepare_model,
        report,
    )

    ember.manual_seed(0)
    model = prepare_model(nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 2)))
    opt = ember.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(7)
    data = TensorDataset(
        ember.tensor(rng.standard_normal((64, 6)).astype(np.float32)),
        ember.tensor(rng.integers(0, 2, 64)),
    )
    loader = prepare_data_loader(DataLoader(data, batch_size=8, shuffle=True))
    start = 0
    ckpt = get_checkpoint()
    if ckpt is not None:  # model + optimizer + epoch: nothing of the loader's
        with ckpt.as_directory() as d:
            state = ember.load(os.path.join(d, "state.pt"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        start = state["epoch"] + 1
    rank = get_context().get_world_rank()
    for epoch in range(start, config["epochs"]):
        loader.sampler.set_epoch(epoch)
        for i, (x, y) in enumerate(loader):
            marker = os.path.join(config["markers"], "killed")
            if config["kill"] and (epoch, i) == (2, 1) and rank == 1 and not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        with tempfile.TemporaryDirectory() as d:
            ck = None
            if rank == 0:
                ember.save(
                    {"model": model.state_dict(), "opt": opt.state_dict(), "epoch": epoch},
                    os.path.join(d, "state.pt"),
                )
                ck = Checkpoint.from_directory(d)
            report({"epoch": epoch}, checkpoint=ck)


def _fit(tmp_path, name, kill):
    from ember.distributed.train import FailureConfig, RunConfig, ScalingConfig, Trainer

    markers = tmp_path / f"markers_{name}"
    markers.mkdir()
    cfg = {"epochs": 4, "kill": kill, "markers": str(markers)}
    result = Trainer(
        _loop,
        cfg,
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(
            storage_path=str(tmp_path), name=name, verbose=0, failure_config=FailureConfig(1)
        ),
        collective_timeout=60,
    ).fit()
    assert [m["epoch"] for m in result.metrics_history] == [0, 1, 2, 3]
    assert os.path.exists(markers / "killed") == kill
    state = ember.load(os.path.join(result.checkpoint.path, "state.pt"))
    return {k: v.numpy() for k, v in state["model"].items()}


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session")
def test_restart_in_the_standard_idiom_ends_bitwise_equal(tmp_path):
    want, got = _fit(tmp_path, "clean", False), _fit(tmp_path, "killed", True)
    assert sorted(want) == sorted(got)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
