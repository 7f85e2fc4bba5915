"""The Trainer's checkpoints with DCP: FSDP on 2 workers reports a distributed checkpoint (each
worker its own files, merged by the driver); a 1-worker run resumes from it, resharded."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = [pytest.mark.full, pytest.mark.usefixtures("ray_session")]


def _loop(config):
    import os
    import tempfile

    import ember
    import ember.distributed.checkpoint as dcp
    from ember import nn
    from ember.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_state_dict,
        set_state_dict,
    )
    from ember.distributed.train import (
        Checkpoint,
        get_checkpoint,
        get_context,
        prepare_model,
        report,
    )

    ctx = get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    ember.manual_seed(config["seed"])
    model = prepare_model(nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 3)))
    opt = ember.optim.Adam(model.parameters(), lr=0.01)
    model_sd, optim_sd = get_state_dict(model, opt)
    state = {"model": model_sd, "optim": optim_sd, "epoch": 0}
    ckpt = get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            dcp.load(state, checkpoint_id=d)
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    x = np.random.default_rng(7).standard_normal((8, 5)).astype(np.float32)
    n = 8 // world
    for _ in range(config["steps"]):
        loss = model(ember.tensor(x[rank * n : (rank + 1) * n])).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    full, _ = get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))
    params = {k: v.numpy().tolist() for k, v in full.items()}
    with tempfile.TemporaryDirectory() as d:
        model_sd, optim_sd = get_state_dict(model, opt)
        epoch = state["epoch"] + 1
        dcp.save({"model": model_sd, "optim": optim_sd, "epoch": epoch}, checkpoint_id=d)
        files = sorted(os.listdir(d))
        report(
            {"params": params, "epoch": epoch, "files": files},
            checkpoint=Checkpoint.from_directory(d),
        )


def test_fsdp_trainer_checkpoint_resumes_on_one_worker(tmp_path):
    from ember.distributed.train import RunConfig, ScalingConfig, Trainer

    first = Trainer(
        _loop,
        train_loop_config={"seed": 0, "steps": 2},
        scaling_config=ScalingConfig(num_workers=2),
        strategy="fsdp",
        run_config=RunConfig(storage_path=str(tmp_path), name="fsdp2", verbose=0),
    ).fit()
    names = sorted(p.name for p in __import__("pathlib").Path(first.checkpoint.path).iterdir())
    assert names == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    again = Trainer(
        _loop,
        train_loop_config={"seed": 1, "steps": 0},  # another init: everything comes from DCP
        scaling_config=ScalingConfig(num_workers=1),
        run_config=RunConfig(storage_path=str(tmp_path), name="one", verbose=0),
        resume_from_checkpoint=first.checkpoint,
    ).fit()
    assert again.metrics["epoch"] == 2
    for k, v in first.metrics["params"].items():
        assert np.array_equal(np.asarray(again.metrics["params"][k]), np.asarray(v)), k
