"""Parameter sharding on a >= 20 M-parameter transformer: memory per rank and step time.

For 2 and 3 ranks (one process each, one BLAS thread each, one fresh process group per
strategy) this trains a small language model with Adam under DDP, ZeRO-1
(``ZeroRedundancyOptimizer`` + DDP), ZeRO-1 and ZeRO-2 as a wrapper (``ZeroDataParallel``) and
ZeRO-3 (``FullyShardedDataParallel``, FULL_SHARD, one unit per encoder layer plus the
embedding and the output layer, forward and backward prefetch), ZeRO-3 with
``CPUOffload(offload_params=True)`` and, for an even number of ranks, HSDP (HYBRID_SHARD on a
2 x N/2 mesh: sharded within each of 2 "hosts", replicated across them), and reports per rank:

- parameters + gradients + Adam state in bytes, MEASURED by
  ``ember.distributed.memory_report`` after an optimizer step, next to the float32 formulas
  (Ψ parameters, N ranks: DDP 16Ψ, ZeRO-1 8Ψ + 8Ψ/N, ZeRO-2 4Ψ + 12Ψ/N, ZeRO-3 16Ψ/N,
  HSDP 16Ψ/(N/2); with CPUOffload the ZeRO-3 bytes live on the host, so on a CUDA model the
  device is spared all 16Ψ/N of them; on a CPU-only run the host is the device and the row
  shows the same bytes as ZeRO-3);
- communication buffers held between steps (DDP's buckets) and the process's peak RSS;
- median step time, and its ratio to DDP's measured in the same run.

Run: ``python benchmarks/sharding.py [--ranks 2 3] [--steps 5] [--layers 6]``.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time

from _common import int_at_least, pin_threads, positive_int, table

VOCAB, D, HEADS, FF, SEQ, BATCH = 8000, 512, 8, 2048, 64, 4
STRATEGIES = ("ddp", "zero1", "zero1_wrapper", "zero2", "zero3", "zero3_offload", "hsdp")
LABELS = {
    "ddp": "DDP",
    "zero1": "ZeRO-1 (ZeroRedundancyOptimizer+DDP)",
    "zero1_wrapper": "ZeRO-1 (ZeroDataParallel stage 1)",
    "zero2": "ZeRO-2 (ZeroDataParallel stage 2)",
    "zero3": "ZeRO-3 (FSDP FULL_SHARD)",
    "zero3_offload": "ZeRO-3 + CPUOffload(offload_params)",
    "hsdp": "HSDP (FSDP HYBRID_SHARD, 2 hosts)",
}


def strategies(world: int) -> tuple[str, ...]:
    """HSDP needs the ranks split into 2 equal "hosts" (a 2 x world/2 mesh)."""
    return tuple(s for s in STRATEGIES if s != "hsdp" or world % 2 == 0)


def formula(strategy: str, psi: int, n: int) -> float:
    return {
        "ddp": 16 * psi,
        "zero1": 8 * psi + 8 * psi / n,
        "zero1_wrapper": 8 * psi + 8 * psi / n,
        "zero2": 4 * psi + 12 * psi / n,
        "zero3": 16 * psi / n,
        # the same bytes, but on the host: a CUDA model keeps none of them on the device
        "zero3_offload": 16 * psi / n,
        # sharded within a host (n/2 ranks), replicated across the 2 hosts
        "hsdp": 16 * psi / (n // 2),
    }[strategy]


# ---- one rank -----------------------------------------------------------------------------
def _build(strategy: str, layers: int, world: int):
    """(model, optimizer, Ψ) for one strategy; every rank builds the same initial weights."""
    import ember
    from ember import nn
    from ember.distributed.device_mesh import init_device_mesh
    from ember.distributed.fsdp import CPUOffload, ShardingStrategy
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
    from ember.distributed.optim import ZeroDataParallel, ZeroRedundancyOptimizer
    from ember.distributed.parallel.ddp import DistributedDataParallel as DDP

    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(VOCAB, D)
            self.pos = nn.Embedding(SEQ, D)
            layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers)
            self.head = nn.Linear(D, VOCAB)

        def forward(self, tokens):
            h = self.emb(tokens) + self.pos.weight[: tokens.shape[1]]
            return self.head(self.encoder(h))

    ember.manual_seed(0)
    model = LM()
    psi = sum(p.numel() for p in model.parameters())
    if strategy in ("ddp", "zero1"):
        model = DDP(model)
    elif strategy in ("zero1_wrapper", "zero2"):
        model = ZeroDataParallel(model, stage=1 if strategy == "zero1_wrapper" else 2)
    else:  # units: each encoder layer, the token embedding and the output layer
        top = {id(model.emb), id(model.head)}

        def policy(module, recurse, nonwrapped_numel):
            return recurse or isinstance(module, nn.TransformerEncoderLayer) or id(module) in top

        kw = {}
        if strategy == "zero3_offload":
            kw["cpu_offload"] = CPUOffload(offload_params=True)
        elif strategy == "hsdp":
            kw["sharding_strategy"] = ShardingStrategy.HYBRID_SHARD
            kw["device_mesh"] = init_device_mesh("cpu", (2, world // 2))
        model = FSDP(model, auto_wrap_policy=policy, forward_prefetch=True, **kw)
    if strategy == "zero1":
        opt = ZeroRedundancyOptimizer(model.parameters(), ember.optim.Adam, lr=1e-4)
    else:
        opt = ember.optim.Adam(model.parameters(), lr=1e-4)
    return model, opt, psi


def _step(model, opt, rng) -> tuple[float, float]:
    import ember
    from ember import nn

    tokens = ember.tensor(rng.integers(0, VOCAB, (BATCH, SEQ)))
    t0 = time.perf_counter()
    opt.zero_grad()
    logits = model(tokens)
    loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens.reshape(-1))
    loss.backward()
    opt.step()
    return time.perf_counter() - t0, loss.item()


def worker(mode: str, out: str, steps: int, layers: int) -> None:
    """``memory:<strategy>``: a fresh process per strategy (memory report, peak RSS);
    ``timing``: every strategy in one process, one step of each in turn, ``steps`` rounds
    (so that the load of the shared machine hits all strategies alike)."""
    pin_threads(1)
    import resource

    import numpy as np

    import ember.distributed as dist

    dist.init_process_group()
    rank = dist.get_rank()
    rng = np.random.default_rng(rank)
    if mode.startswith("memory:"):
        strategy = mode.split(":", 1)[1]
        model, opt, psi = _build(strategy, layers, dist.get_world_size())
        for _ in range(2):
            _, loss = _step(model, opt, rng)
        res = {
            "psi": psi,
            "memory": dist.memory_report(model, opt),
            "loss": loss,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        }
    else:
        world = dist.get_world_size()
        built = {s: _build(s, layers, world)[:2] for s in strategies(world)}
        times = {s: [] for s in built}
        for i in range(1 + steps):  # the first round warms up
            for s, (model, opt) in built.items():
                dist.barrier()
                t, _ = _step(model, opt, rng)
                if i:
                    times[s].append(t)
        res = {s: float(np.median(v)) for s, v in times.items()}
    with open(os.path.join(out, f"{mode}-{rank}.json"), "w") as f:
        json.dump(res, f)
    dist.destroy_process_group()


# ---- driver -------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, mode: str, out: str, steps: int, layers: int) -> list[dict]:
    port, token = _free_port(), secrets.token_hex(16)
    procs = []
    for r in range(world):
        env = dict(
            os.environ,
            RANK=str(r),
            LOCAL_RANK=str(r),
            WORLD_SIZE=str(world),
            LOCAL_WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            EMBER_TOKEN=token,
        )
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    mode,
                    out,
                    "--steps",
                    str(steps),
                    "--layers",
                    str(layers),
                ],
                env=env,
            )
        )
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"{mode} on {world} ranks failed: exit codes {codes}")
    results = []
    for r in range(world):
        with open(os.path.join(out, f"{mode}-{r}.json")) as f:
            results.append(json.load(f))
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--ranks",
        type=int_at_least(2),
        nargs="+",
        default=[2, 3],
        help="world sizes to measure (each >= 2)",
    )
    ap.add_argument("--steps", type=positive_int, default=6, help="timed rounds")
    ap.add_argument("--layers", type=positive_int, default=6)
    ap.add_argument("--worker", nargs=2, metavar=("MODE", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], args.worker[1], args.steps, args.layers)
        return
    mib = 1024 * 1024
    raw = {}
    with tempfile.TemporaryDirectory() as out:
        for world in args.ranks:
            names = strategies(world)
            mem = {s: launch(world, f"memory:{s}", out, args.steps, args.layers) for s in names}
            timing = launch(world, "timing", out, args.steps, args.layers)
            raw[world] = {"memory": mem, "timing": timing}
            # a step ends when the slowest rank ends
            step = {s: max(r[s] for r in timing) for s in names}
            psi = mem["ddp"][0]["psi"]
            rows = []
            for s in names:
                res = mem[s]
                pgs = max(
                    sum(r["memory"][k] for k in ("parameters", "gradients", "optimizer_state"))
                    for r in res
                )
                f = formula(s, psi, world)
                rows.append(
                    [
                        LABELS[s],
                        f"{pgs / mib:.1f}",
                        f"{f / mib:.1f}",
                        f"{pgs / f:.3f}",
                        f"{max(r['memory']['communication_buffers'] for r in res) / mib:.1f}",
                        f"{max(r['peak_rss'] for r in res) / mib:.0f}",
                        f"{step[s] * 1000:.0f}",
                        f"{step[s] / step['ddp']:.2f}",
                    ]
                )
            print(
                f"\nTransformer LM, Ψ = {psi:,} parameters, {world} ranks, float32 + Adam "
                "(MiB per rank; measured = parameters + gradients + Adam state, after a step)"
            )
            print(
                table(
                    rows,
                    [
                        "strategy",
                        "measured",
                        "formula",
                        "measured/formula",
                        "comm buffers",
                        "peak RSS",
                        "ms/step",
                        "vs DDP",
                    ],
                ),
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1)


if __name__ == "__main__":
    main()
