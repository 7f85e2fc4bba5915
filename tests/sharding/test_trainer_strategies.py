"""The Trainer's "zero1", "zero2" and "fsdp" strategies end where one process on the whole
batch ends (what DDP computes: equal shards, averaged gradients)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.usefixtures("ray_session")


def _train(prepare, rank: int, world: int):
    import ember
    from ember import nn

    ember.manual_seed(0)
    model = prepare(nn.Sequential(nn.Linear(5, 9), nn.ReLU(), nn.Linear(9, 3)))
    opt = ember.optim.Adam(model.parameters(), lr=0.01)
    rng = np.random.default_rng(7)
    x = rng.standard_normal((8, 5)).astype(np.float32)
    y = rng.integers(0, 3, 8)
    n = 8 // world
    for _ in range(4):
        part = slice(rank * n, (rank + 1) * n)
        loss = nn.functional.cross_entropy(model(ember.tensor(x[part])), ember.tensor(y[part]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return type(model).__name__, {k: v.numpy().tolist() for k, v in model.state_dict().items()}


def _loop(config):
    from ember.distributed.train import get_context, prepare_model, report

    ctx = get_context()
    wrapper, params = _train(prepare_model, ctx.get_world_rank(), ctx.get_world_size())
    report({"wrapper": wrapper, "params": params})


def test_sharding_strategies_in_the_trainer(tmp_path):
    from ember.distributed.train import RunConfig, ScalingConfig, Trainer

    results = {}
    for strategy in ("zero1", "zero2", "fsdp"):
        res = Trainer(
            _loop,
            scaling_config=ScalingConfig(num_workers=2),
            strategy=strategy,
            run_config=RunConfig(storage_path=str(tmp_path), name=strategy, verbose=0),
        ).fit()
        results[strategy] = res.metrics
    assert results["zero1"]["wrapper"] == results["zero2"]["wrapper"] == "ZeroDataParallel"
    assert results["fsdp"]["wrapper"] == "FullyShardedDataParallel"
    ref = _train(lambda m: m, 0, 1)[1]
    for strategy in ("zero1", "zero2", "fsdp"):
        got = results[strategy]["params"]
        assert sorted(got) == sorted(ref)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], atol=1e-6, err_msg=f"{strategy} {k}")
