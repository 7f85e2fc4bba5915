"""The Trainer on GPUs: each worker gets its GPU through Ray, trains on it, and reports.

Marked ``gpu``: skipped on machines without CUDA and CuPy. One GPU serves both tests; the
second gives two workers half of it each (``resources_per_worker={"GPU": 0.5}``), which is how
several workers share a device, and runs DDP over the host backend between them (NCCL refuses
two ranks on one device).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import ember
from ember.distributed.train import (
    Checkpoint,
    RunConfig,
    ScalingConfig,
    Trainer,
    get_context,
    get_device,
    prepare_data_loader,
    prepare_model,
    report,
)
from ember.utils.data import DataLoader, TensorDataset

pytestmark = [pytest.mark.gpu, pytest.mark.usefixtures("ray_session")]


def _gpu_loop(config):
    import ray

    ctx = get_context()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    loader = prepare_data_loader(
        DataLoader(TensorDataset(ember.tensor(x), ember.tensor(y)), batch_size=8, shuffle=True)
    )
    ember.manual_seed(0)
    model = prepare_model(
        ember.nn.Sequential(ember.nn.Linear(8, 16), ember.nn.ReLU(), ember.nn.Linear(16, 2))
    )
    opt = ember.optim.SGD(model.parameters(), lr=0.1)
    devices = set()
    for epoch in range(config["epochs"]):
        total = 0.0
        for xb, yb in loader:
            devices.add(str(xb.device))
            opt.zero_grad()
            loss = ember.nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item()
        params = [p.detach().cpu().numpy() for p in model.parameters()]
        checksum = float(sum(p.sum() for p in params))
        hi, lo = ember.tensor([checksum]), ember.tensor([-checksum])
        if ctx.get_world_size() > 1:  # every replica must hold the same weights
            import ember.distributed as dist

            dist.all_reduce(hi, op=dist.ReduceOp.MAX)
            dist.all_reduce(lo, op=dist.ReduceOp.MAX)
        ckpt = None
        if ctx.get_world_rank() == 0 and epoch == config["epochs"] - 1:
            d = os.path.join(ctx.get_trial_dir(), "tmp_ckpt")
            os.makedirs(d, exist_ok=True)
            ember.save(
                {k: v.cpu() for k, v in model.state_dict().items()}, os.path.join(d, "model.pt")
            )
            ckpt = Checkpoint.from_directory(d)
        report(
            {
                "epoch": epoch,
                "loss": total,
                "device": str(get_device()),
                "param_device": str(next(model.parameters()).device),
                "batch_devices": sorted(devices),
                "cuda_visible": os.environ["CUDA_VISIBLE_DEVICES"],
                "ray_gpus": [str(g) for g in ray.get_gpu_ids()],
                "checksum": checksum,
                "spread": hi.item() + lo.item(),
            },
            checkpoint=ckpt,
        )


def test_one_worker_trains_on_its_gpu(tmp_path):
    result = Trainer(
        _gpu_loop,
        {"epochs": 3},
        scaling_config=ScalingConfig(num_workers=1, use_gpu=True),
        run_config=RunConfig(storage_path=str(tmp_path), name="gpu1", verbose=0),
    ).fit()
    m = result.metrics
    assert m["device"] == "cuda:0" and m["param_device"] == "cuda:0"
    assert m["batch_devices"] == ["cuda:0"]
    assert m["cuda_visible"] == ",".join(m["ray_gpus"]) and len(m["ray_gpus"]) == 1
    losses = [h["loss"] for h in result.metrics_history]
    assert losses[-1] < losses[0]
    with result.checkpoint.as_directory() as d:
        state = ember.load(os.path.join(d, "model.pt"))
    assert set(state) == {"0.weight", "0.bias", "2.weight", "2.bias"}


def test_two_workers_share_one_gpu(tmp_path):
    result = Trainer(
        _gpu_loop,
        {"epochs": 2},
        scaling_config=ScalingConfig(
            num_workers=2, use_gpu=True, resources_per_worker={"GPU": 0.5}
        ),
        run_config=RunConfig(storage_path=str(tmp_path), name="gpu2", verbose=0),
        backend="shm",
    ).fit()
    m = result.metrics
    assert m["device"] == "cuda:0" and m["param_device"] == "cuda:0"
    assert m["batch_devices"] == ["cuda:0"]
    assert m["cuda_visible"] == m["ray_gpus"][0]  # listed once, though two workers hold it
    assert [h["epoch"] for h in result.metrics_history] == [0, 1]
    # DDP kept both replicas equal (max - min of the ranks' weight sums)
    assert np.isfinite(m["checksum"]) and m["spread"] == 0.0
