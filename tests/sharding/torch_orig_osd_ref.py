"""PyTorch's reference for test_fsdp_orig_osd: one gloo rank of ``python torch_orig_osd_ref.py
osd OUTDIR``. The same training as orig_osd_worker.py under torch's
FSDP(use_orig_params=True); writes ``OUTDIR/torch-osd-rank<r>.npz`` with its full
``FSDP.optim_state_dict`` (``osd/<name>/<key>`` and ``groups``).

torch 2.13 on 2 gloo ranks returns ``exp_avg`` and ``exp_avg_sq`` of a parameter as views of
one buffer (both hold ``exp_avg_sq``), so the test takes the state's values from a plain
torch AdamW and only names, groups, shapes and ``exp_avg_sq`` from this run."""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from fsdp_ext_worker import STEPS, param_groups_spec
from torch.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp.wrap import ModuleWrapPolicy
from torch_fsdp_ext_ref import Block, make_model, train


def run(rank: int, world: int) -> dict:
    model = FSDP(
        make_model(),
        auto_wrap_policy=ModuleWrapPolicy({Block}),
        device_id=torch.device("cpu"),
        use_orig_params=True,
    )
    named = list(model.named_parameters())
    groups = param_groups_spec([n for n, _ in named])
    opt = torch.optim.AdamW(
        [{"params": [named[i][1] for i in g["idx"]], **g["opts"]} for g in groups], lr=1e-2
    )
    assert STEPS > 0
    train(model, opt, rank, world)
    FSDP.set_state_dict_type(
        model,
        StateDictType.FULL_STATE_DICT,
        FullStateDictConfig(rank0_only=False),
        FullOptimStateDictConfig(rank0_only=False),
    )
    osd = FSDP.optim_state_dict(model, opt)
    out = {
        "groups": np.array(
            [f"{g['lr']}|{g['weight_decay']}|{','.join(g['params'])}" for g in osd["param_groups"]]
        )
    }
    for name, st in osd["state"].items():
        for key, v in st.items():
            out[f"osd/{name}/{key}"] = v.detach().numpy().copy()
    return out


def main(scenarios: str, outdir: str) -> None:
    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo", rank=rank, world_size=world)
    np.savez(os.path.join(outdir, f"torch-{scenarios}-rank{rank}.npz"), **run(rank, world))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
