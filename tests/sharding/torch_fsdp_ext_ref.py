"""PyTorch's reference runs for test_fsdp_{offload,orig_params,hybrid}: one gloo rank of
``python torch_fsdp_ext_ref.py SCENARIOS OUTDIR`` (RANK / WORLD_SIZE / MASTER_* set by
``fsdp_ext_worker.launch``). Same model, initial values and batches as fsdp_ext_worker.py;
each scenario writes ``OUTDIR/torch-<scenario>-rank<r>.npz`` with the full parameters after
training and, for ``orig``, this rank's ``named_parameters()`` shapes."""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from fsdp_ext_worker import STEPS, batch, init_values, param_groups_spec
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp import ShardingStrategy
from torch.distributed.fsdp.wrap import ModuleWrapPolicy


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        return self.ln(self.fc(x).relu()) + x


def make_model() -> nn.Module:
    m = nn.Sequential(nn.Linear(5, 7), Block(7), Block(7), nn.Linear(7, 3))
    values = init_values([(k, tuple(v.shape)) for k, v in m.state_dict().items()])
    m.load_state_dict({k: torch.from_numpy(v) for k, v in values.items()})
    return m


def train(model, opt, rank: int, world: int) -> None:
    for s in range(STEPS):
        x, y = batch(s, rank, world)
        loss = nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
        opt.zero_grad()
        loss.backward()
        opt.step()


def full_params(model) -> dict:
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def run(scenario: str, rank: int, world: int) -> dict:
    cpu = torch.device("cpu")
    wrap = ModuleWrapPolicy({Block})
    out = {}
    if scenario in ("orig", "offload"):
        kw = {"use_orig_params": True} if scenario == "orig" else {}
        # torch's CPUOffload pins memory, which needs an accelerator: the reference of
        # ember's offloaded run is torch's FSDP without offload (offloading changes no value)
        model = FSDP(make_model(), auto_wrap_policy=wrap, device_id=cpu, **kw)
        if scenario == "orig":
            named = list(model.named_parameters())
            groups = param_groups_spec([n for n, _ in named])
            opt = torch.optim.AdamW(
                [{"params": [named[i][1] for i in g["idx"]], **g["opts"]} for g in groups],
                lr=1e-2,
            )
            out["shapes"] = np.array([f"{n}:{tuple(p.shape)}" for n, p in named])
        else:
            opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    elif scenario == "hybrid":
        mesh = init_device_mesh("cpu", (2, world // 2))
        model = FSDP(
            make_model(),
            auto_wrap_policy=wrap,
            device_id=cpu,
            sharding_strategy=ShardingStrategy.HYBRID_SHARD,
            device_mesh=mesh,
        )
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    else:
        raise ValueError(f"unknown scenario {scenario!r}")
    train(model, opt, rank, world)
    out.update({f"param/{k}": v for k, v in full_params(model).items()})
    return out


def main(scenarios: str, outdir: str) -> None:
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    for sc in scenarios.split(","):
        np.savez(os.path.join(outdir, f"torch-{sc}-rank{rank}.npz"), **run(sc, rank, world))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
