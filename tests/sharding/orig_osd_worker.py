"""One ember rank for test_fsdp_orig_osd: ``python orig_osd_worker.py osd OUTDIR``.

FSDP(use_orig_params=True) with AdamW in per-parameter groups trains ``STEPS`` steps; the
rank writes ``OUTDIR/ember-osd-rank<r>.npz`` with its ``FSDP.optim_state_dict`` (full, on
every rank: ``osd/<name>/<key>``, and ``groups``), then the parameters after two more steps
of the run itself (``cont/``) and of fresh copies restored from the full (``full/``) and the
sharded (``sharded/``) optimizer state dict through ``optim_state_dict_to_load``."""

from __future__ import annotations

import os
import sys

import numpy as np
from fsdp_ext_worker import STEPS, _ember_model, batch, param_groups_spec

MORE = 2  # steps after the save


def _groups_rows(osd: dict) -> np.ndarray:
    return np.array(
        [f"{g['lr']}|{g['weight_decay']}|{','.join(g['params'])}" for g in osd["param_groups"]]
    )


def _build():
    import ember
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
    from ember.distributed.fsdp import ModuleWrapPolicy

    model, block = _ember_model()
    model = FSDP(model, auto_wrap_policy=ModuleWrapPolicy({block}), use_orig_params=True)
    named = list(model.named_parameters())
    groups = param_groups_spec([n for n, _ in named])
    opt = ember.optim.AdamW(
        [{"params": [named[i][1] for i in g["idx"]], **g["opts"]} for g in groups], lr=1e-2
    )
    return model, opt


def _train(model, opt, steps, rank: int, world: int) -> None:
    import ember
    from ember import nn

    for s in steps:
        x, y = batch(s, rank, world)
        loss = nn.functional.cross_entropy(model(ember.tensor(x)), ember.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()


def _params(model) -> dict:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def run(rank: int, world: int) -> dict:
    from ember.distributed.fsdp import FullOptimStateDictConfig, FullStateDictConfig, StateDictType
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP

    full_cfg = (FullStateDictConfig(rank0_only=False), FullOptimStateDictConfig(rank0_only=False))
    model, opt = _build()
    _train(model, opt, range(STEPS), rank, world)
    FSDP.set_state_dict_type(model, StateDictType.FULL_STATE_DICT, *full_cfg)
    weights = model.state_dict()
    full = FSDP.optim_state_dict(model, opt)
    FSDP.set_state_dict_type(model, StateDictType.SHARDED_STATE_DICT)
    sharded = FSDP.optim_state_dict(model, opt)
    out = {"groups": _groups_rows(full)}
    for name, st in full["state"].items():
        for key, v in st.items():
            out[f"osd/{name}/{key}"] = np.asarray(v.numpy())
    restored = []
    for osd in (full, sharded):
        m, o = _build()
        FSDP.set_state_dict_type(m, StateDictType.FULL_STATE_DICT, *full_cfg)
        m.load_state_dict(weights)
        FSDP.optim_state_dict_to_load(m, o, osd, load_directly=True)
        restored.append((m, o))
    for prefix, (m, o) in zip(("cont", "full", "sharded"), [(model, opt), *restored]):
        _train(m, o, range(STEPS, STEPS + MORE), rank, world)
        FSDP.set_state_dict_type(m, StateDictType.FULL_STATE_DICT, *full_cfg)
        out.update({f"{prefix}/{k}": v for k, v in _params(m).items()})
    return out


def main(scenarios: str, outdir: str) -> None:
    import ember.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group()
    np.savez(os.path.join(outdir, f"ember-{scenarios}-rank{rank}.npz"), **run(rank, world))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
