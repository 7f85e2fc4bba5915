"""One rank of the FSDP2 (``fully_shard``) tests: ``python fsdp2_worker.py SCENARIOS OUTDIR``.

Started by ``run_ranks``-like code in test_fully_shard.py (RANK / WORLD_SIZE / MASTER_* set).
Every scenario builds the same model on every rank (same seed), keeps a one-process reference
copy, trains both, and writes ``OUTDIR/<scenario>-rank<r>.npz`` (``fsdp/<name>`` and
``ref/<name>`` arrays, plus scalars) for the test to compare.
"""

from __future__ import annotations

import copy
import gc
import sys
import tracemalloc

import numpy as np

import ember
import ember.distributed as dist
from ember import nn
from ember.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard
from ember.distributed.fsdp._fully_shard import _param_group as _pg
from ember.distributed.tensor import DTensor, Shard
from ember.distributed.tensor.parallel import DTensorParameter

STEPS = 3


def mlp(dtype=ember.float64) -> nn.Module:
    ember.manual_seed(0)
    # 7 and 3 rows: uneven shards on 2 ranks (padding)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).to(dtype)


def block(dtype=ember.float64) -> nn.Module:
    ember.manual_seed(0)
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, batch_first=True)
    return nn.Sequential(layer, nn.Linear(8, 3)).to(dtype)


def shard_mlp(model, **kw):
    for m in (model[0], model[2]):
        fully_shard(m, **kw)
    return fully_shard(model, **kw)


def shard_block(model, **kw):
    layer = model[0]
    for m in (layer.self_attn, layer.linear1, layer.linear2):
        fully_shard(m, **kw)
    fully_shard(layer, **kw)  # the norms
    return fully_shard(model, **kw)


def batch(step: int, rank: int, kind: str, dtype):
    g = np.random.default_rng(1000 * step + rank)
    shape = (4, 5) if kind == "mlp" else (2, 4, 8)
    x = ember.tensor(g.standard_normal(shape), dtype=dtype)
    t = ember.tensor(g.standard_normal((*shape[:-1], 3)), dtype=dtype)
    return x, t


def loss_of(model, x, t):
    return ((model(x).to(ember.float64) - t.to(ember.float64)) ** 2).mean()


def reference_step(ref, opt, step, world, kind, in_dtype, param_dtype=None, micro=1):
    """One step of the one-process reference: each rank's gradient separately (summed over
    its micro-batches), then their mean (what the reduce-scatter computes), then the
    optimizer."""
    grads = []
    for r in range(world):
        x, t = batch(step, r, kind, in_dtype)
        if param_dtype is None:
            ref.zero_grad()
            for i in range(micro):
                x, t = batch(step * micro + i, r, kind, in_dtype)
                loss_of(ref, x, t).backward()
            grads.append([ember._interop.array_of(p.grad).copy() for p in ref.parameters()])
        else:
            low = copy.deepcopy(ref).to(param_dtype)
            loss_of(low, x.to(param_dtype), t).backward()
            grads.append([ember._interop.array_of(p.grad).copy() for p in low.parameters()])
    for p, *gs in zip(ref.parameters(), *grads):
        mean = sum(gs[1:], gs[0]) / world  # in the gradients' dtype, as the reduce-scatter
        p.grad = ember.tensor(mean.astype(ember._interop.array_of(p).dtype))
    opt.step()


def train_pair(kind, opt_cls, opt_kw, rank, world, *, dtype=ember.float64, micro=1, **shard_kw):
    model = mlp(dtype) if kind == "mlp" else block(dtype)
    ref = copy.deepcopy(model)
    names = [n for n, _ in model.named_parameters()]
    (shard_mlp if kind == "mlp" else shard_block)(model, **shard_kw)
    opt = opt_cls(model.parameters(), **opt_kw)
    ref_opt = opt_cls(ref.parameters(), **opt_kw)
    mp = shard_kw.get("mp_policy")
    pdt = mp.param_dtype if mp is not None else None
    for step in range(STEPS):
        opt.zero_grad()
        for i in range(micro):
            model.set_requires_gradient_sync(i == micro - 1)
            x, t = batch(step * micro + i, rank, kind, dtype)
            loss_of(model, x, t).backward()
        opt.step()
        reference_step(ref, ref_opt, step, world, kind, dtype, pdt, micro)
    out = {}
    for name, p in zip(names, model.parameters()):
        assert isinstance(p, DTensorParameter) and p.placements == (Shard(0),), name
        out[f"fsdp/{name}"] = ember._interop.array_of(p.full_tensor()).astype(np.float64)
    for name, p in zip(names, ref.parameters()):
        out[f"ref/{name}"] = ember._interop.array_of(p).astype(np.float64)
    return model, out


PARITY = {  # name: (model, optimizer, its arguments, fully_shard's arguments, micro-batches)
    "mlp-True": ("mlp", ember.optim.SGD, {"lr": 0.1}, {}, 1),
    "mlp-False": ("mlp", ember.optim.SGD, {"lr": 0.1}, {"reshard_after_forward": False}, 1),
    "mlp-offload": ("mlp", ember.optim.SGD, {"lr": 0.1}, {"offload_policy": CPUOffloadPolicy()}, 1),
    # set_requires_gradient_sync(False) on the first of 2 micro-batches: gradient accumulation
    "mlp-accum": ("mlp", ember.optim.SGD, {"lr": 0.1}, {}, 2),
    "block-True": ("block", ember.optim.Adam, {"lr": 1e-2}, {}, 1),
    "block-False": ("block", ember.optim.Adam, {"lr": 1e-2}, {"reshard_after_forward": False}, 1),
}
MP = {"float16": ember.float16, "bfloat16": ember.bfloat16}


def parity(out, rank, world, names):
    res = {}
    for case in names:
        kind, opt_cls, kw, shard_kw, micro = PARITY[case]
        model, arrays = train_pair(kind, opt_cls, kw, rank, world, micro=micro, **shard_kw)
        res.update({f"{case}/{k}": v for k, v in arrays.items()})
        # the state dict holds Shard(0) DTensors under the original names, and loads back
        sd = model.state_dict()
        assert all(isinstance(v, DTensor) and v.placements == (Shard(0),) for v in sd.values())
        res[f"{case}/sd-keys"] = np.array(sorted(sd))
        fresh = mlp() if kind == "mlp" else block()
        (shard_mlp if kind == "mlp" else shard_block)(fresh)
        fresh.load_state_dict(sd)
        res[f"{case}/sd-loaded"] = np.array(
            all(
                np.array_equal(ember._interop.array_of(a), ember._interop.array_of(b))
                for a, b in zip(model.parameters(), fresh.parameters())
            )
        )
    np.savez(f"{out}/parity-{'-'.join(names)}-rank{rank}.npz", **res)


def mixed_precision(out, rank, world, names):
    """Against a one-process reference doing the same casts: forward/backward in
    ``param_dtype``, the gradients' mean in ``reduce_dtype``, SGD on float32."""
    res = {}
    for name in names:
        mp = MixedPrecisionPolicy(param_dtype=MP[name], reduce_dtype=MP[name])
        model, arrays = train_pair(
            "mlp", ember.optim.SGD, {"lr": 0.1}, rank, world, dtype=ember.float32, mp_policy=mp
        )
        res.update({f"{name}/{k}": v for k, v in arrays.items()})
        inner = []  # registered after fully_shard's: sees the unsharded parameter
        model[2].register_forward_pre_hook(lambda m, a, seen=inner: seen.append(m.weight.dtype))
        model[2].register_forward_hook(lambda m, a, o, seen=inner: seen.append(o.dtype))
        x, t = batch(0, rank, "mlp", ember.float32)
        loss_of(model, x, t).backward()
        w = model[2].weight
        res[f"{name}/dtypes"] = np.array([str(d) for d in (*inner, w.dtype, w.grad.dtype)])
    np.savez(f"{out}/mixed_precision-{'-'.join(names)}-rank{rank}.npz", **res)


def memory(out, rank, world, names):
    """Bytes of parameters alive on this rank (tracemalloc sees NumPy's allocations), for the
    full model and after fully_shard, and after a training step (resharded)."""

    def model():
        ember.manual_seed(0)
        return nn.Sequential(*[nn.Linear(256, 256) for _ in range(4)])

    model()  # loads what a first large draw loads (the compiled random engine's module),
    gc.collect()  # so that the traced growth below is the parameters alone
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    net = model()
    full = tracemalloc.get_traced_memory()[0] - base
    for layer in net:
        fully_shard(layer)
    fully_shard(net)
    gc.collect()
    sharded = tracemalloc.get_traced_memory()[0] - base
    opt = ember.optim.SGD(net.parameters(), lr=0.1)
    x = ember.randn(8, 256)
    # count the collectives of one step: one flat all-gather per group and pass, one
    # reduce-scatter per group
    calls = {"all_gather_into_tensor": 0, "reduce_scatter_tensor": 0}
    originals = {name: getattr(_pg._c, name) for name in calls}

    def counting(name):
        def call(*args, **kwargs):
            calls[name] += 1
            return originals[name](*args, **kwargs)

        return call

    for name in calls:
        setattr(_pg._c, name, counting(name))
    try:
        net(x).pow(2).mean().backward()
    finally:
        for name, fn in originals.items():
            setattr(_pg._c, name, fn)
    opt.step()
    opt.zero_grad(set_to_none=True)
    net.reshard()
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    local = sum(ember._interop.array_of(p).nbytes for p in net.parameters())
    np.savez(
        f"{out}/memory-{'-'.join(names)}-rank{rank}.npz",
        full=full,
        sharded=sharded,
        after_step=after,
        local_param_bytes=local,
        all_gathers=calls["all_gather_into_tensor"],
        reduce_scatters=calls["reduce_scatter_tensor"],
    )


SCENARIOS = {"parity": parity, "mixed_precision": mixed_precision, "memory": memory}


def main() -> None:
    """argv: ``SCENARIO:case+case,SCENARIO:case OUTDIR``."""
    jobs, out = sys.argv[1].split(","), sys.argv[2]
    dist.init_process_group()
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        for job in jobs:
            name, _, cases = job.partition(":")
            SCENARIOS[name](out, rank, world, cases.split("+") if cases else ["all"])
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
