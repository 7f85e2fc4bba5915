"""Recovery: workers killed mid-epoch (SIGKILL by PID), twice; the group restarts from the
latest checkpoint and ends with exactly the weights of an uninterrupted run."""

import os
import signal
import tempfile

import numpy as np
import pytest

from ember.distributed.train import (
    Checkpoint,
    FailureConfig,
    RunConfig,
    ScalingConfig,
    Trainer,
    TrainingFailedError,
    get_checkpoint,
    get_context,
    prepare_data_loader,
    prepare_model,
    report,
)

pytestmark = [pytest.mark.usefixtures("ray_session"), pytest.mark.slow]


def _loop(config):
    import ember
    import ember.nn as nn
    import ember.nn.functional as F
    from ember.utils.data import DataLoader, TensorDataset

    ember.manual_seed(0)
    model = prepare_model(
        nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 2))
    )
    opt = ember.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(7)
    data = TensorDataset(
        ember.tensor(rng.standard_normal((96, 6)).astype(np.float32)),
        ember.tensor(rng.integers(0, 2, 96)),
    )
    loader = prepare_data_loader(DataLoader(data, batch_size=8, shuffle=True))
    start = 0
    ckpt = get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = ember.load(os.path.join(d, "state.pt"))
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        ember.set_rng_state(state["rng"])
        if not config.get("set_epoch"):
            loader.load_state_dict(state["loader"])  # the epoch counter drives the shuffle
        start = state["epoch"] + 1
    rank = get_context().get_world_rank()
    for epoch in range(start, config["epochs"]):
        if config.get("set_epoch"):  # PyTorch's idiom instead of the loader's state
            loader.sampler.set_epoch(epoch)
        for i, (x, y) in enumerate(loader):
            kill = (epoch, i) in [tuple(k) for k in config["kill_at"]]
            marker = os.path.join(config["markers"], f"{epoch}_{i}")
            if kill and rank == 1 and not os.path.exists(marker):
                open(marker, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)  # this worker dies mid-epoch
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        with tempfile.TemporaryDirectory() as d:
            ck = None
            if rank == 0:
                ember.save(
                    {
                        "model": model.state_dict(),
                        "opt": opt.state_dict(),
                        "rng": ember.get_rng_state(),
                        "loader": loader.state_dict(),
                        "epoch": epoch,
                    },
                    os.path.join(d, "state.pt"),
                )
                ck = Checkpoint.from_directory(d)
            report({"epoch": epoch}, checkpoint=ck)


def _final_weights(result):
    import ember

    state = ember.load(os.path.join(result.checkpoint.path, "state.pt"))
    return {k: v.numpy() for k, v in state["model"].items()}


def _fit(tmp_path, name, kill_at, max_failures, **config):
    markers = tmp_path / f"markers_{name}"
    markers.mkdir()
    cfg = {"epochs": 4, "kill_at": kill_at, "markers": str(markers), **config}
    return Trainer(
        _loop,
        cfg,
        scaling_config=ScalingConfig(num_workers=2),
        run_config=RunConfig(
            storage_path=str(tmp_path),
            name=name,
            verbose=0,
            failure_config=FailureConfig(max_failures),
        ),
        collective_timeout=60,
    ).fit()


def test_killed_twice_mid_epoch_ends_with_the_uninterrupted_weights(tmp_path):
    clean = _fit(tmp_path, "clean", [], 0)
    killed = _fit(tmp_path, "killed", [(1, 3), (2, 5)], 2)
    assert [m["epoch"] for m in killed.metrics_history] == [0, 1, 2, 3]
    want, got = _final_weights(clean), _final_weights(killed)
    assert sorted(want) == sorted(got)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_failures_beyond_the_limit_raise_with_rank_and_count(tmp_path):
    with pytest.raises(TrainingFailedError) as info:
        _fit(tmp_path, "limit", [(0, 2), (1, 2)], 1)
    msg = str(info.value)
    assert "Training failed on rank 1" in msg and "2 failure(s) with max_failures=1" in msg
    assert "died unexpectedly" in msg
