"""One rank of a sharding test: ``python sharding_worker.py SCENARIO OUTDIR [ARG]``.

Started by ``run_ranks`` (conftest.py) with RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT set.
Each scenario writes ``OUTDIR/<scenario>-rank<r>.npz`` (arrays) and/or ``.json`` for the test
to compare; every rank writes, so the test can also check that the ranks agree.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import numpy as np

import ember
import ember.distributed as dist
from ember import nn
from ember.distributed.fsdp import (
    BackwardPrefetch,
    FullOptimStateDictConfig,
    FullStateDictConfig,
    MixedPrecision,
    ModuleWrapPolicy,
    OptimStateKeyType,
    ShardingStrategy,
    StateDictType,
    checkpoint,
    size_based_auto_wrap_policy,
)
from ember.distributed.fsdp import (
    FullyShardedDataParallel as FSDP,
)
from ember.distributed.optim import ZeroDataParallel, ZeroRedundancyOptimizer
from ember.distributed.parallel.ddp import DistributedDataParallel as DDP

GLOBAL_BATCH = 12  # divisible by 1, 2 and 3 ranks: every world size sees the same samples
OPTIMIZERS = {
    "adam": (ember.optim.Adam, {"lr": 1e-2}),
    "sgd": (ember.optim.SGD, {"lr": 0.05, "momentum": 0.9}),
}


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.ln = nn.LayerNorm(d)

    def forward(self, x):
        return self.ln(self.fc(x).relu()) + x


def make_model() -> nn.Module:
    """Odd sizes (so flat parameters need padding) and two blocks (nested units)."""
    ember.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 7), Block(7), Block(7), nn.Linear(7, 3))


def batch(step: int, rank: int, world: int):
    rng = np.random.default_rng(1000 + step)
    x = rng.standard_normal((GLOBAL_BATCH, 5)).astype(np.float32)
    y = rng.integers(0, 3, GLOBAL_BATCH)
    n = GLOBAL_BATCH // world
    return ember.tensor(x[rank * n : (rank + 1) * n]), ember.tensor(y[rank * n : (rank + 1) * n])


def train(model, opt, steps, rank, world, start: int = 0) -> None:
    for s in range(start, start + steps):
        x, y = batch(s, rank, world)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def full_params(model) -> dict:
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


STRATEGIES = {
    "zero1": lambda m: DDP(m),  # with ZeroRedundancyOptimizer, below
    "zero1_wrapper": lambda m: ZeroDataParallel(m, stage=1),
    "zero2": lambda m: ZeroDataParallel(m, stage=2, bucket_cap_mb=0.0002),  # several buckets
    "fsdp_full_shard": lambda m: FSDP(m, auto_wrap_policy=ModuleWrapPolicy({Block})),
    "fsdp_prefetch": lambda m: FSDP(
        m,
        auto_wrap_policy=functools.partial(size_based_auto_wrap_policy, min_num_params=40),
        forward_prefetch=True,
        backward_prefetch=BackwardPrefetch.BACKWARD_POST,
    ),
    "fsdp_shard_grad_op": lambda m: FSDP(
        m,
        sharding_strategy=ShardingStrategy.SHARD_GRAD_OP,
        auto_wrap_policy=ModuleWrapPolicy({Block}),
    ),
    "fsdp_no_shard": lambda m: FSDP(
        m, sharding_strategy=ShardingStrategy.NO_SHARD, auto_wrap_policy=ModuleWrapPolicy({Block})
    ),
}


def parity(out: str, rank: int, world: int) -> None:
    """10 steps of every strategy and of DDP, with Adam and with SGD + momentum."""
    arrays = {}
    for oname, (cls, kw) in OPTIMIZERS.items():
        ref = DDP(make_model())
        train(ref, cls(ref.parameters(), **kw), 10, rank, world)
        arrays.update({f"{oname}/ddp/{k}": v for k, v in full_params(ref).items()})
        for sname, wrap in STRATEGIES.items():
            model = wrap(make_model())
            if sname == "zero1":
                opt = ZeroRedundancyOptimizer(model.parameters(), cls, **kw)
            else:
                opt = cls(model.parameters(), **kw)
            train(model, opt, 10, rank, world)
            arrays.update({f"{oname}/{sname}/{k}": v for k, v in full_params(model).items()})
    np.savez(os.path.join(out, f"parity-rank{rank}.npz"), **arrays)


def memory(out: str, rank: int, world: int) -> None:
    """Measured bytes after one Adam step for each strategy, with the layout to check them."""

    def mlp():
        ember.manual_seed(0)
        return nn.Sequential(*[nn.Linear(129, 129) for _ in range(4)])

    x = ember.randn(8, 129)
    report = {}
    for name in ("ddp", "zero1", "zero1_wrapper", "zero2", "fsdp_full_shard"):
        model = (
            DDP(mlp())
            if name in ("ddp", "zero1")
            else ZeroDataParallel(mlp(), stage=1)
            if name == "zero1_wrapper"
            else ZeroDataParallel(mlp(), stage=2)
            if name == "zero2"
            else FSDP(mlp(), auto_wrap_policy=ModuleWrapPolicy({nn.Linear}))
        )
        opt = (
            ZeroRedundancyOptimizer(model.parameters(), ember.optim.Adam)
            if name == "zero1"
            else ember.optim.Adam(model.parameters())
        )
        model(x).sum().backward()
        opt.step()
        report[name] = dist.memory_report(model, opt)
        if name == "fsdp_full_shard":  # outside forward, gathered storage is handed back
            report["fsdp_resident_after_step"] = sum(
                h.storage.resident for u in model.modules() for h in getattr(u, "_handles", [])
            )
    report["numel"] = sum(p.numel() for p in mlp().parameters())
    with open(os.path.join(out, f"memory-rank{rank}.json"), "w") as f:
        json.dump(report, f)


def _fsdp_adam():
    model = FSDP(make_model(), auto_wrap_policy=ModuleWrapPolicy({Block}))
    return model, ember.optim.Adam(model.parameters(), lr=1e-2)


def ckpt_save(out: str, rank: int, world: int) -> None:
    """Train 5 steps, save sharded (twice, for the mixing test) and full, train 5 more; also
    resume from the sharded checkpoint into a fresh model on the same ranks."""
    model, opt = _fsdp_adam()
    train(model, opt, 5, rank, world)
    checkpoint.save_sharded_checkpoint(os.path.join(out, "sharded"), model, opt, extra={"step": 5})
    checkpoint.save_sharded_checkpoint(
        os.path.join(out, "sharded_b"), model, opt, extra={"step": 5}
    )
    with FSDP.state_dict_type(
        model,
        StateDictType.FULL_STATE_DICT,
        FullStateDictConfig(rank0_only=True),
        FullOptimStateDictConfig(rank0_only=True),
    ):
        full = {"model": model.state_dict(), "optim": FSDP.optim_state_dict(model, opt)}
    if rank == 0:
        ember.save(full, os.path.join(out, "full.ember"))
    else:
        assert full["model"] == {} and full["optim"] == {}, "rank0_only leaked to other ranks"
    train(model, opt, 5, rank, world, start=5)
    result = {f"continued/{k}": v for k, v in full_params(model).items()}
    model2, opt2 = _fsdp_adam()
    extra = checkpoint.load_sharded_checkpoint(os.path.join(out, "sharded"), model2, opt2)
    assert extra == {"step": 5}, extra
    train(model2, opt2, 5, rank, world, start=5)
    result.update({f"resumed/{k}": v for k, v in full_params(model2).items()})
    np.savez(os.path.join(out, f"ckpt_save-rank{rank}.npz"), **result)


def ckpt_load(out: str, rank: int, world: int) -> None:
    """Continue from the checkpoints on this number of ranks: the consolidated sharded one
    (plain model + plain Adam on 1 rank; FSDP otherwise) and the full one (FSDP)."""
    result = {}
    full = checkpoint.load_full_state_dicts(os.path.join(out, "sharded"))
    if world == 1:
        plain = make_model()
        plain.load_state_dict(full["model"])
        popt = ember.optim.Adam(plain.parameters(), lr=1e-2)
        popt.load_state_dict(
            FSDP.rekey_optim_state_dict(full["optim"], OptimStateKeyType.PARAM_ID, plain)
        )
    else:
        plain, popt = _fsdp_adam()
        plain.load_state_dict(full["model"])
        FSDP.optim_state_dict_to_load(plain, popt, full["optim"], load_directly=True)
    train(plain, popt, 5, rank, world, start=5)
    result.update({f"from_sharded/{k}": v for k, v in full_params(plain).items()})
    saved = ember.load(os.path.join(out, "full.ember"))
    model, opt = _fsdp_adam()
    model.load_state_dict(saved["model"])
    opt.load_state_dict(FSDP.optim_state_dict_to_load(model, opt, saved["optim"]))
    train(model, opt, 5, rank, world, start=5)
    result.update({f"from_full/{k}": v for k, v in full_params(model).items()})
    model, opt = _fsdp_adam()  # the sharded checkpoint straight, re-sharded for this job
    checkpoint.load_sharded_checkpoint(os.path.join(out, "sharded"), model, opt)
    train(model, opt, 5, rank, world, start=5)
    result.update({f"from_resharded/{k}": v for k, v in full_params(model).items()})
    np.savez(os.path.join(out, f"ckpt_load{world}-rank{rank}.npz"), **result)


MP_CONFIGS = {  # name: (sharding strategy, MixedPrecision keyword arguments)
    "bf16": (ShardingStrategy.FULL_SHARD, {}),  # reduce_dtype defaults to param_dtype
    "bf16_reduce_fp32": (ShardingStrategy.FULL_SHARD, {"reduce_dtype": ember.float32}),
    "bf16_grad_op": (ShardingStrategy.SHARD_GRAD_OP, {"reduce_dtype": ember.float32}),
    "bf16_no_shard": (ShardingStrategy.NO_SHARD, {}),
    "bf16_keep_low": (ShardingStrategy.FULL_SHARD, {"keep_low_precision_grads": True}),
}
MP_STEPS = 4


def _mp_model():
    model = make_model()
    model.register_buffer("stat", ember.full((3,), 1.1))  # a float buffer for buffer_dtype
    return model


def _mp_reference(mp_kw: dict, rank: int, world: int) -> dict:
    """One process doing FSDP's casts: each rank's batch through a bf16 copy of the fp32
    parameters, the gradients cast to reduce_dtype, summed, averaged, cast back, SGD in fp32."""
    import copy

    red = mp_kw.get("reduce_dtype", ember.bfloat16)
    ref = _mp_model()
    opt = ember.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9)
    for s in range(MP_STEPS):
        total = None
        for r in range(world):
            low = copy.deepcopy(ref).to(ember.bfloat16)
            x, y = batch(s, r, world)
            nn.functional.cross_entropy(low(x.to(ember.bfloat16)), y).backward()
            grads = [p.grad.to(red) for p in low.parameters()]
            total = grads if total is None else [a + b for a, b in zip(total, grads)]
        want = ember.bfloat16 if mp_kw.get("keep_low_precision_grads") else ember.float32
        for p, g in zip(ref.parameters(), total):
            p.grad = (g * (1.0 / world)).to(want)
        opt.step()
    return full_params(ref)


def mixed_precision(out: str, rank: int, world: int) -> None:
    """MP_STEPS SGD steps of FSDP with bf16 param_dtype per config, its single-process
    reference, and the dtypes seen: output, gradients at the optimizer, state_dict, buffer."""
    arrays, info = {}, {}
    for name, (strategy, kw) in MP_CONFIGS.items():
        mp = MixedPrecision(param_dtype=ember.bfloat16, buffer_dtype=ember.bfloat16, **kw)
        model = FSDP(
            _mp_model(),
            sharding_strategy=strategy,
            mixed_precision=mp,
            auto_wrap_policy=ModuleWrapPolicy({Block}),
        )
        opt = ember.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        seen = {"out": set(), "grad": set(), "param": set()}
        for s in range(MP_STEPS):
            x, y = batch(s, rank, world)
            logits = model(x)
            seen["out"].add(str(logits.dtype))
            opt.zero_grad()
            nn.functional.cross_entropy(logits, y).backward()
            seen["grad"].update(str(p.grad.dtype) for p in model.parameters())
            seen["param"].update(str(p.dtype) for p in model.parameters())
            opt.step()
        sd = model.state_dict()
        info[name] = {k: sorted(v) for k, v in seen.items()}
        info[name]["state_dict"] = sorted({str(v.dtype) for v in sd.values()})
        info[name]["buffer_in_module"] = str(model.module.stat.dtype)
        arrays.update({f"{name}/fsdp/{k}": v.numpy() for k, v in sd.items()})
        arrays.update({f"{name}/ref/{k}": v for k, v in _mp_reference(kw, rank, world).items()})
    model = FSDP(_mp_model(), auto_wrap_policy=ModuleWrapPolicy({Block}))  # no casts at all
    train(model, ember.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), MP_STEPS, rank, world)
    arrays.update({f"fp32/fsdp/{k}": v for k, v in full_params(model).items()})
    arrays.update({f"init/{k}": v for k, v in full_params(_mp_model()).items()})
    np.savez(os.path.join(out, f"mixed_precision-rank{rank}.npz"), **arrays)
    with open(os.path.join(out, f"mixed_precision-rank{rank}.json"), "w") as f:
        json.dump(info, f)


SCENARIOS = {
    "parity": parity,
    "memory": memory,
    "ckpt_save": ckpt_save,
    "ckpt_load": ckpt_load,
    "mixed_precision": mixed_precision,
}


def main() -> None:
    names, out = sys.argv[1].split(","), sys.argv[2]
    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        for name in names:
            SCENARIOS[name](out, rank, world)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
