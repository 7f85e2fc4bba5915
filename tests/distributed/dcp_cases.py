"""Rank-side scenarios of the distributed checkpoint tests (module-level so spawned ranks can
import them by name): train under one parallelism, save with DCP, load under another."""

from __future__ import annotations

import os

import numpy as np

import ember
import ember.distributed as dist
import ember.distributed.checkpoint as dcp
from ember import nn
from ember.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_state_dict,
    set_state_dict,
)

BATCH = 8


def make_model(seed: int = 0) -> nn.Module:
    """Odd sizes, so FSDP's flat pieces cross parameter boundaries and need padding."""
    ember.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 7), nn.ReLU(), nn.Linear(7, 3))


def wrap(model: nn.Module, how: str) -> nn.Module:
    if how == "fsdp":
        from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
        from ember.distributed.fsdp import ModuleWrapPolicy

        return FSDP(model, auto_wrap_policy=ModuleWrapPolicy({nn.Linear}))
    if how == "ddp":
        return nn.parallel.DistributedDataParallel(model)
    return model


def train(model, opt, steps: int, rank: int, world: int) -> None:
    for s in range(steps):
        rng = np.random.default_rng(100 + s)
        x = rng.standard_normal((BATCH, 5)).astype(np.float32)
        n = BATCH // world
        loss = model(ember.tensor(x[rank * n : (rank + 1) * n])).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def _arrays(sd) -> dict:
    """``{flattened key: array}`` of a full model / optimizer state dict (test side)."""
    out = {}

    def rec(v, prefix):
        if isinstance(v, dict):
            for k, x in v.items():
                rec(x, f"{prefix}{k}.")
        elif isinstance(v, ember.Tensor):
            out[prefix[:-1]] = v.detach().numpy().copy()
        elif k_is_plain(v):
            out[prefix[:-1]] = v

    rec(sd, "")
    return out


def k_is_plain(v) -> bool:
    return isinstance(v, (int, float, str, bool, tuple, list)) or v is None


def full_state(model, opt) -> dict:
    """Every rank's view of the whole model and optimizer state, as arrays."""
    msd, osd = get_state_dict(model, opt, options=StateDictOptions(full_state_dict=True))
    return {**_arrays({"model": msd}), **_arrays({"optim": osd})}


def train_and_save(how: str, path: str, steps: int = 2, process_group=None) -> dict:
    """Train ``steps`` under ``how`` on this group, save with DCP, return the full state."""
    rank, world = dist.get_rank(), dist.get_world_size()
    model = wrap(make_model(), how)
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    train(model, opt, steps, rank, world)
    msd, osd = get_state_dict(model, opt)
    dcp.save(
        {"model": msd, "optim": osd, "step": steps},
        checkpoint_id=path,
        process_group=process_group,
    )
    return full_state(model, opt)


def load_into(how: str, path: str) -> dict:
    """A freshly made model (another seed) under ``how``, loaded from ``path``."""
    model = wrap(make_model(seed=7), how)
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    msd, osd = get_state_dict(model, opt)
    sd = {"model": msd, "optim": osd, "step": 0}
    dcp.load(sd, checkpoint_id=path)
    set_state_dict(model, opt, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    out = full_state(model, opt)
    out["step"] = sd["step"]
    return out


def load_alone(path: str) -> dict:
    """One process, no process group: a plain model loaded from ``path``."""
    model = make_model(seed=7)
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    msd, osd = get_state_dict(model, opt)
    sd = {"model": msd, "optim": osd, "step": 0}
    dcp.load(sd, checkpoint_id=path)
    set_state_dict(model, opt, model_state_dict=sd["model"], optim_state_dict=sd["optim"])
    out = full_state(model, opt)
    out["step"] = sd["step"]
    return out


def save_alone(path: str, steps: int = 2) -> dict:
    model = make_model()
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    train(model, opt, steps, 0, 1)
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd, "step": steps}, checkpoint_id=path, no_dist=True)
    return full_state(model, opt)


def killed_mid_save(rank: int, path: str) -> str:
    """Save once, then save again with rank 1 dying halfway through writing its file."""
    from ember.distributed.checkpoint import filesystem

    dist.init_process_group(timeout=60.0)
    group = dist.new_group(timeout=3.0)  # the survivor's save gives up 3 s after the crash
    train_and_save("fsdp", path, steps=1, process_group=group)
    if rank == 1:
        real = filesystem.FileSystemWriter.write_rank

        def die(self, staging, r, arrays):
            name = real(self, staging, r, arrays)
            p = os.path.join(staging, name)
            os.truncate(p, os.path.getsize(p) // 2)  # a half-written file, then the crash
            os._exit(3)

        filesystem.FileSystemWriter.write_rank = die
    train_and_save("fsdp", path, steps=3, process_group=group)
    return "finished"


def _global(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def save_dtensors(path: str) -> None:
    """TP x DP on a 2 x 2 mesh: a weight sharded over both dimensions, a bias sharded over one
    and replicated over the other (odd sizes: uneven shards)."""
    from ember.distributed.tensor import Replicate, Shard, distribute_tensor, init_device_mesh

    mesh = init_device_mesh("cpu", (2, 2), mesh_dim_names=("dp", "tp"))
    w = distribute_tensor(ember.tensor(_global((7, 5), 1)), mesh, [Shard(0), Shard(1)])
    b = distribute_tensor(ember.tensor(_global((5,), 2)), mesh, [Replicate(), Shard(0)])
    dcp.save({"w": w, "b": b}, checkpoint_id=path)


def load_dtensors(path: str) -> list:
    """Into a 1-d mesh of this group, the weight sharded the other way; returns each local
    shard next to the slice of the global tensor it should equal."""
    from ember.distributed.tensor import Replicate, Shard, distribute_tensor, init_device_mesh

    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    w = distribute_tensor(ember.zeros(7, 5), mesh, [Shard(1)])
    b = distribute_tensor(ember.zeros(5), mesh, [Replicate()])
    dcp.load({"w": w, "b": b}, checkpoint_id=path)
    from ember.distributed.checkpoint._items import dtensor_box

    (o0, o1), (s0, s1) = dtensor_box(w)
    want = _global((7, 5), 1)[o0 : o0 + s0, o1 : o1 + s1]
    return [
        np.array_equal(w.to_local().numpy(), want),
        np.array_equal(b.to_local().numpy(), _global((5,), 2)),
    ]


def save_own_dirs(root: str) -> tuple:
    """FSDP training where each rank saves into its own directory (as in a Trainer's
    training function); returns the directory packed as ``report`` sends it, and the state."""
    from ember.distributed.train import Checkpoint

    path = os.path.join(root, f"rank{dist.get_rank()}")
    state = train_and_save("fsdp", path)
    return Checkpoint.from_directory(path).pack(), sorted(os.listdir(path)), state


def async_save_fsdp(path: str) -> dict:
    """async_save under FSDP: training goes on while the files are written; the checkpoint
    holds the state of when it was called."""
    rank, world = dist.get_rank(), dist.get_world_size()
    model = wrap(make_model(), "fsdp")
    opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    train(model, opt, 2, rank, world)
    msd, osd = get_state_dict(model, opt)
    fut = dcp.async_save({"model": msd, "optim": osd, "step": 2}, checkpoint_id=path)
    state = full_state(model, opt)
    train(model, opt, 1, rank, world)  # meanwhile
    fut.result(timeout=60)
    return state
