"""One rank of test_meta_device.py's FSDP2 check: ``python _meta_fsdp_worker.py OUTDIR``.

PyTorch's FSDP2 example flow: build the model on the meta device, ``fully_shard`` each block
and the root, then give it real weights, train, and write ``OUTDIR/rank<r>.npz`` with the
full parameters after training next to a one-process reference's. Two ways in:

- ``to_empty``: ``to_empty(device="cpu")``, then ``load_state_dict`` of the reference's
  weights as ``Shard(0)`` DTensors (``distribute_tensor``), copied into the shards;
- ``assign``: straight from meta, ``load_state_dict(..., assign=True)`` of the same
  DTensors (as the example's checkpoint.py, which wraps them in ``nn.Parameter`` first).

Plus ``reset``: ``to_empty`` then every module's ``reset_parameters()`` with a seed: the
gathered parameters equal an unsharded model's reset with the same seed (``nn.init`` draws
the global tensor and keeps the rank's piece), and training runs.
"""

from __future__ import annotations

import sys

import numpy as np

import ember
import ember.distributed as dist
from ember import nn
from ember.distributed.fsdp import fully_shard
from ember.distributed.tensor import distribute_tensor

STEPS = 3


def build() -> nn.Module:
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, batch_first=True)
    return nn.Sequential(nn.Linear(5, 8), layer, nn.Linear(8, 3)).to(ember.float64)


def shard(model: nn.Module) -> nn.Module:
    for m in model:
        fully_shard(m)
    return fully_shard(model)


def batch(step: int, rank: int):
    g = np.random.default_rng(100 * step + rank)
    return ember.tensor(g.standard_normal((2, 4, 5))), ember.tensor(g.standard_normal((2, 4, 3)))


def reset(model: nn.Module) -> nn.Module:
    for m in model.modules():  # (MultiheadAttention's is _reset_parameters, as in torch)
        fn = getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)
        if fn is not None:
            fn()
    return model


def loss_of(model, x, t):
    return ((model(x) - t) ** 2).mean()


def train(model, rank: int, world: int, sharded: bool) -> list[float]:
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(STEPS):
        opt.zero_grad()
        if sharded:
            x, t = batch(step, rank)
            loss = loss_of(model, x, t)
        else:  # the reference: every rank's batch, the mean of their losses
            loss = sum(loss_of(model, *batch(step, r)) for r in range(world)) / world
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses


def meta_model(world: int):
    with ember.device("meta"):
        model = build()
    assert all(p.is_meta for p in model.parameters())
    shard(model)
    assert all(p.is_meta for p in model.parameters())
    assert model.state_dict()["0.weight"].device_mesh.device_type == "cpu"
    return model


def sharded_sd(model, full_sd):
    """The reference's full weights as DTensors laid out like ``model``'s sharded ones."""
    out = {}
    for name, like in model.state_dict().items():
        out[name] = distribute_tensor(full_sd[name], like.device_mesh, like.placements)
    return out


def main(outdir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    ember.manual_seed(0)
    ref = build()
    full_sd = {k: v.detach().clone() for k, v in ref.state_dict().items()}
    res = {"ref/losses": np.array(train(ref, rank, world, sharded=False))}
    for name, p in ref.named_parameters():
        res[f"ref/{name}"] = p.detach().numpy()
    for way in ("to_empty", "assign"):
        model = meta_model(world)
        if way == "to_empty":
            model.to_empty(device="cpu")
            model.load_state_dict(sharded_sd(model, full_sd))
        else:
            model.load_state_dict(sharded_sd(model, full_sd), assign=True)
        assert not any(p.is_meta for p in model.parameters()), way
        res[f"{way}/losses"] = np.array(train(model, rank, world, sharded=True))
        for name, p in model.named_parameters():
            res[f"{way}/{name}"] = ember._interop.array_of(p.full_tensor())
    unsharded = build()
    ember.manual_seed(1)
    reset(unsharded)
    model = meta_model(world)
    model.to_empty(device="cpu")
    ember.manual_seed(1)
    reset(model)
    for (name, p), (_, q) in zip(model.named_parameters(), unsharded.named_parameters()):
        res[f"reset/{name}"] = ember._interop.array_of(p.full_tensor())
        res[f"reset_unsharded/{name}"] = q.detach().numpy()
    res["reset/rng_after"] = ember.random.get_rng_state().numpy()
    res["reset/finite"] = np.array(
        all(np.isfinite(ember._interop.array_of(p)).all() for p in model.parameters())
    )
    res["reset/losses"] = np.array(train(model, rank, world, sharded=True))
    np.savez(f"{outdir}/rank{rank}.npz", **res)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
