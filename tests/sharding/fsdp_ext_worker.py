"""One ember rank for test_fsdp_{offload,orig_params,hybrid}: ``python fsdp_ext_worker.py
SCENARIOS OUTDIR`` (RANK / WORLD_SIZE / MASTER_* set by ``launch``). Each scenario trains the
same model from the same values on the same global batches (split by rank) and writes
``OUTDIR/ember-<scenario>-rank<r>.npz`` with the full parameters after training.

Also the helpers shared with torch_fsdp_ext_ref.py (values, batches, parameter groups) and
``launch``, which starts the ranks of either script."""

from __future__ import annotations

import os
import sys

import numpy as np

STEPS = 4
# the CI run: one launch of 4 ranks ("2 hosts" of 2) for every test file
CI_WORLD = 4
CI_SCENARIOS = "orig,offload,hybrid,hybrid_pg,hybrid_env,hybrid_zero2,fsdp2_hsdp,ddp,ddp_groups"
CI_ENV = {"LOCAL_WORLD_SIZE": "2"}  # hybrid_env: two ranks per host
GLOBAL_BATCH = 12  # divisible by 1, 2, 3 and 4 ranks
HERE = os.path.dirname(os.path.abspath(__file__))


def init_values(shapes: list[tuple[str, tuple]]) -> dict:
    """Initial values by state-dict key (the same in ember and in torch)."""
    rng = np.random.default_rng(0)
    return {k: (rng.standard_normal(s) * 0.4).astype(np.float32) for k, s in shapes}


def batch(step: int, rank: int, world: int):
    rng = np.random.default_rng(1000 + step)
    x = rng.standard_normal((GLOBAL_BATCH, 5)).astype(np.float32)
    y = rng.integers(0, 3, GLOBAL_BATCH)
    n = GLOBAL_BATCH // world
    return x[rank * n : (rank + 1) * n], y[rank * n : (rank + 1) * n]


def param_groups_spec(names: list[str]) -> list[dict]:
    """Per-parameter groups by name: decayed weights; biases and norms without decay and
    with their own learning rate (what use_orig_params is for)."""
    no_decay = [i for i, n in enumerate(names) if n.endswith("bias") or ".ln." in n]
    decay = [i for i in range(len(names)) if i not in no_decay]
    return [
        {"idx": decay, "opts": {"weight_decay": 0.1}},
        {"idx": no_decay, "opts": {"weight_decay": 0.0, "lr": 5e-3}},
    ]


def launch(script: str, world: int, scenarios: str, outdir, timeout: float = 600, env=None):
    """Run ``world`` ranks of ``script`` (in this folder); return the failures' stderr tails
    ('' when every rank exited 0)."""
    from sharding_procs import launch_ranks

    path = HERE + os.pathsep + os.environ.get("PYTHONPATH", "")
    return launch_ranks(
        os.path.join(HERE, script),
        world,
        [scenarios, outdir],
        timeout,
        {"PYTHONPATH": path, **(env or {})},
    )


_RUNS: dict = {}


def results(script: str, world: int, scenarios: str, tmp_path_factory, env=None) -> dict:
    """``{(scenario, rank): npz}`` of one launch of ``script``, run once per test session
    (several test files share a run); fails the test when a rank failed."""
    import pytest

    key = (script, world, scenarios, tuple(sorted((env or {}).items())))
    if key not in _RUNS:
        out = tmp_path_factory.mktemp("fsdp_ext")
        err = launch(script, world, scenarios, out, env=env)
        _RUNS[key] = err or {
            (sc, r): dict(np.load(os.path.join(out, f"{_prefix(script)}-{sc}-rank{r}.npz")))
            for sc in scenarios.split(",")
            for r in range(world)
        }
    got = _RUNS[key]
    if isinstance(got, str):
        pytest.fail(f"{scenarios} on {world} ranks failed:\n{got}")
    return got


def _prefix(script: str) -> str:
    return "torch" if script.startswith("torch") else "ember"


# ---- the ember side ---------------------------------------------------------------------------
def _ember_model():
    import ember
    from ember import nn

    class Block(nn.Module):
        def __init__(self, d: int):
            super().__init__()
            self.fc = nn.Linear(d, d)
            self.ln = nn.LayerNorm(d)

        def forward(self, x):
            return self.ln(self.fc(x).relu()) + x

    m = nn.Sequential(nn.Linear(5, 7), Block(7), Block(7), nn.Linear(7, 3))
    values = init_values([(k, tuple(v.shape)) for k, v in m.state_dict().items()])
    m.load_state_dict({k: ember.tensor(v) for k, v in values.items()})
    return m, Block


def _train(model, opt, rank: int, world: int) -> None:
    import ember
    from ember import nn

    for s in range(STEPS):
        x, y = batch(s, rank, world)
        loss = nn.functional.cross_entropy(model(ember.tensor(x)), ember.tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()


def run(scenario: str, rank: int, world: int) -> dict:
    import ember
    import ember.distributed as dist
    from ember.distributed.device_mesh import init_device_mesh
    from ember.distributed.fsdp import CPUOffload, ModuleWrapPolicy, ShardingStrategy
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
    from ember.distributed.parallel.ddp import DistributedDataParallel as DDP

    model, block = _ember_model()
    wrap = ModuleWrapPolicy({block})
    hybrid = ShardingStrategy.HYBRID_SHARD
    out = {}
    if scenario in ("orig", "ddp_groups"):  # AdamW with per-parameter groups
        if scenario == "orig":
            model = FSDP(model, auto_wrap_policy=wrap, use_orig_params=True)
        else:
            model = DDP(model)
        named = list(model.named_parameters())
        groups = param_groups_spec([n for n, _ in named])
        opt = ember.optim.AdamW(
            [{"params": [named[i][1] for i in g["idx"]], **g["opts"]} for g in groups], lr=1e-2
        )
        out["shapes"] = np.array([f"{n}:{tuple(p.shape)}" for n, p in named])
    else:
        if scenario == "offload":
            model = FSDP(model, auto_wrap_policy=wrap, cpu_offload=CPUOffload(offload_params=True))
        elif scenario == "ddp":
            model = DDP(model)
        elif scenario in ("hybrid", "hybrid_zero2"):
            mesh = init_device_mesh("cpu", (2, world // 2))
            strategy = hybrid if scenario == "hybrid" else ShardingStrategy._HYBRID_SHARD_ZERO2
            model = FSDP(model, auto_wrap_policy=wrap, sharding_strategy=strategy, device_mesh=mesh)
        elif scenario == "hybrid_pg":  # (shard, replicate) groups given as a tuple
            h = world // 2
            shard = [dist.new_group(list(range(i * h, (i + 1) * h))) for i in range(2)]
            rep = [dist.new_group([j, j + h]) for j in range(h)]
            pg = (shard[rank // h], rep[rank % h])
            model = FSDP(model, auto_wrap_policy=wrap, sharding_strategy=hybrid, process_group=pg)
        elif scenario == "hybrid_env":  # the hosts from LOCAL_WORLD_SIZE (set by the test)
            model = FSDP(model, auto_wrap_policy=wrap, sharding_strategy=hybrid)
        elif scenario == "fsdp2_hsdp":  # fully_shard on a 2-D mesh: replicate dim 0
            from ember.distributed.fsdp import fully_shard

            mesh = init_device_mesh("cpu", (2, world // 2))
            for m in model.modules():
                if isinstance(m, block):
                    fully_shard(m, mesh=mesh)
            fully_shard(model, mesh=mesh)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
        opt = ember.optim.Adam(model.parameters(), lr=1e-2)
    handles = [h for m in model.modules() for h in getattr(m, "_handles", [])]
    if handles:  # FSDP: the elements this rank holds, and the padded total
        out["shard_numel"] = np.array(sum(h.flat_param.numel() for h in handles))
        out["padded"] = np.array(sum(h.padded for h in handles))
    _train(model, opt, rank, world)
    sd = model.state_dict()
    for k, v in sd.items():
        if hasattr(v, "full_tensor"):  # FSDP2: DTensor entries
            v = v.full_tensor()
        out[f"param/{k}"] = v.detach().numpy().copy()
    return out


def main(scenarios: str, outdir: str) -> None:
    import ember.distributed as dist

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group()
    for sc in scenarios.split(","):
        np.savez(os.path.join(outdir, f"ember-{sc}-rank{rank}.npz"), **run(sc, rank, world))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
