"""DP, FSDP, TP, PP and TP x DP on a GPT-shaped model: step time, memory and wire bytes per rank.

    python benchmarks/parallelism.py                          # all strategies, sizes tiny,small
    python benchmarks/parallelism.py --size tiny --strategies dp,tp --steps 3
    python benchmarks/parallelism.py --netns                  # 2 ranks per "host" (root)
    python benchmarks/parallelism.py --world 2 --project      # 2 ranks; the α-β projection

A GPT (token + position embedding, pre-norm blocks of causal attention and a 4x MLP, bias-free
linears, an untied LM head) is trained with Adam on one fixed global batch of ``batch``
sequences (strong scaling: every strategy does the same work per step) by 4 ranks, one
process and one BLAS thread each:

* ``dp``: ``DistributedDataParallel``, ``batch / 4`` sequences per rank;
* ``fsdp``: ``FullyShardedDataParallel`` (FULL_SHARD; one unit per block, the token embedding
  and the LM head), ``batch / 4`` per rank;
* ``tp``: ``parallelize_module`` on each block over 4 ranks (q, k, v and fc1 colwise; the
  attention output and fc2 rowwise), the whole batch on every rank; embeddings, norms and the
  head replicated;
* ``pp``: 4 stages of ``layers / 4`` blocks (the first also embeds, the last also norms and
  projects), ``Schedule1F1B`` with ``--microbatches`` micro-batches;
* ``tpdp``: a 2 x 2 mesh (``dp``, ``tp``): TP over ``mesh["tp"]``, ``batch / 2`` per ``dp``
  row, gradients averaged over ``mesh["dp"]`` with one allreduce per parameter.

Per strategy: the median step (slowest rank) over ``--steps`` timed steps after one warm-up,
parameters + gradients + optimizer state per rank (``ember.distributed.memory_report``, the
largest rank), and the bytes each rank hands to the transports per step (every collective and
point-to-point send passes ``Comm.send``; ``ember.distributed.experiment.tracer.SendCounter``
counts them; the mean over ranks) next to the analytical count (docs/distributed.md, section
"Parallelism benchmark"). The default backend is ``grpc`` (the network data plane, also on one
host); under ``shm`` DDP's buckets take the shared-memory arena, which sends nothing.

``--world 2`` runs every strategy on 2 ranks instead (2 pipeline stages, TP over 2; no tpdp).
``--project`` also fits α-β to allreduces on the run's ranks, times the whole model's forward +
backward and Adam step on one rank (every rank at once), and prints the step time
``ember.distributed.experiment.parallel_cost`` predicts from them beside each cell's best step
(docs/experiments.md, "Model parallelism").
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "distributed"))  # netns.py
from _common import choice_list, pin_threads, positive_int, table  # noqa: E402
from _parallelism_formulas import (  # noqa: E402, F401  (re-exported: the old names stay here)
    PP_HEADER,
    SMALL_BYTES,
    TP_ALLREDUCES,
    WORLD,
    allreduce_bytes,
    analytical,
    ddp_buckets,
)
from _parallelism_model import (  # noqa: E402, F401
    TP_PLAN,
    _setup,
    _Stage,
    _stage_class,
    _tp_blocks,
    build_gpt,
)

# numpy and ember load only inside functions, after main() has pinned the BLAS threads

STRATEGIES = ("dp", "fsdp", "tp", "pp", "tpdp")
BACKENDS = ("grpc", "shm")
# vocab, d_model, heads, layers, seq, global batch
SIZES = {
    "tiny": dict(vocab=512, d=64, heads=4, layers=4, seq=32, batch=16),
    "small": dict(vocab=2048, d=128, heads=4, layers=4, seq=64, batch=16),
    "medium": dict(vocab=4096, d=256, heads=8, layers=8, seq=64, batch=16),
}
COLUMNS = [
    "size",
    "strategy",
    "params",
    "step ms",
    "mem MiB/rank",
    "wire KiB/rank",
    "analytical KiB",
    "meas/anal",
]


def worker(
    out: str,
    strategies: list,
    sizes: list,
    steps: int,
    microbatches: int,
    backend,
    hosts: int,
    project: bool = False,
):
    import statistics
    import time

    import ember.distributed as dist
    from ember.distributed.experiment.tracer import SendCounter

    dist.init_process_group(backend)
    rank = dist.get_rank()
    if project:
        from parallelism_projection import calibrate

        with open(os.path.join(out, f"calib{rank}.json"), "w") as f:
            json.dump(calibrate(sizes), f)
    results = []
    for size in sizes:
        cfg = SIZES[size]
        for strategy in strategies:
            step, objs, local = _setup(strategy, cfg, microbatches)
            step()  # warm-up: first-call setup (shape exchange, buffers) stays out of the count
            times, sent = [], []
            for _ in range(steps):
                dist.barrier()
                with SendCounter() as counter:
                    t0 = time.perf_counter()
                    step()
                    times.append(time.perf_counter() - t0)
                sent.append(counter.bytes)
            full = build_gpt(cfg)
            param_bytes = [p.numel() * 4 for p in full.parameters()]
            mem = dist.memory_report(*objs)
            results.append(
                {
                    "size": size,
                    "strategy": strategy,
                    "params": sum(param_bytes) // 4,
                    "step": statistics.median(times),
                    "step_min": min(times),
                    "mem": mem["parameters"] + mem["gradients"] + mem["optimizer_state"],
                    "mem_total": mem["total"],
                    "sent": statistics.median(sent),
                    "analytical": analytical(
                        strategy, cfg, param_bytes, local, hosts, dist.get_world_size()
                    ),
                }
            )
            if rank == 0:  # progress, as each cell finishes (rank 0's own figures)
                r0 = results[-1]
                print(
                    f"{size} {strategy}: {1e3 * r0['step']:.1f} ms, sent {r0['sent']:.0f} B",
                    file=sys.stderr,
                    flush=True,
                )
            del step, objs
            dist.barrier()
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    dist.destroy_process_group()


# ---- driver -----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args, out: str, pair=None) -> list[list[dict]]:
    from netns import ADDRS

    port, token = _free_port(), secrets.token_hex(16)
    addr = ADDRS[0] if pair is not None else "127.0.0.1"
    procs = []
    for r in range(args.world):
        env = dict(
            os.environ,
            RANK=str(r),
            LOCAL_RANK=str(r // 2 if pair else r),
            WORLD_SIZE=str(args.world),
            LOCAL_WORLD_SIZE=str(2 if pair else args.world),
            MASTER_ADDR=addr,
            MASTER_PORT=str(port),
            EMBER_TOKEN=token,
        )
        argv = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            out,
            "--strategies",
            ",".join(args.strategies),
            "--size",
            ",".join(args.size),
            "--steps",
            str(args.steps),
            "--microbatches",
            str(args.microbatches),
            "--backend",
            args.backend,
        ]
        argv += ["--netns"] if pair is not None else []
        argv += ["--project"] if args.project else []
        if pair is not None:
            procs.append(pair.popen(r // 2, argv, env=env))
        else:
            procs.append(subprocess.Popen(argv, env=env))
    codes = [p.wait(timeout=3600) for p in procs]
    if any(codes):
        raise SystemExit(f"ranks failed: exit codes {codes}")
    per_rank = []
    for r in range(args.world):
        with open(os.path.join(out, f"rank{r}.json")) as f:
            per_rank.append(json.load(f))
    if args.project:
        args.calibration = []
        for r in range(args.world):
            with open(os.path.join(out, f"calib{r}.json")) as f:
                args.calibration.append(json.load(f))
    return per_rank


def summarize(per_rank: list[list[dict]]) -> list[list]:
    """One row per (size, strategy): slowest rank's median step, largest rank's memory, mean
    bytes sent per rank, the analytical mean."""
    rows = []
    for cells in zip(*per_rank):
        c0 = cells[0]
        sent = sum(c["sent"] for c in cells) / len(cells)
        anal = sum(c["analytical"] for c in cells) / len(cells)
        rows.append(
            [
                c0["size"],
                c0["strategy"],
                c0["params"],
                f"{1e3 * max(c['step'] for c in cells):.1f}",
                f"{max(c['mem'] for c in cells) / 2**20:.2f}",
                f"{sent / 1024:.1f}",
                f"{anal / 1024:.1f}",
                f"{sent / anal:.3f}" if anal else "-",
            ]
        )
    return rows


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--strategies",
        type=choice_list(STRATEGIES),
        default=list(STRATEGIES),
        help=f"comma-separated, from {', '.join(STRATEGIES)} (or all; default all)",
    )
    p.add_argument(
        "--size",
        type=choice_list(SIZES),
        default=["tiny", "small"],
        help=f"model sizes, comma-separated, from {', '.join(SIZES)} (or all; default tiny,small)",
    )
    p.add_argument("--steps", type=positive_int, default=5, help="timed steps (default 5)")
    p.add_argument(
        "--microbatches",
        type=positive_int,
        default=4,
        help="pipeline micro-batches; must divide the batch (16) (default 4)",
    )
    p.add_argument(
        "--backend", choices=BACKENDS, default="grpc", help="ember backend (default grpc)"
    )
    p.add_argument("--netns", action="store_true", help="2 ranks in each of two namespaces")
    p.add_argument(
        "--world", type=int, choices=(2, 4), default=WORLD, help=f"ranks (default {WORLD})"
    )
    p.add_argument(
        "--project",
        action="store_true",
        help="also fit α-β and a compute reference here and print the cost model's step times",
    )
    p.add_argument("--json", help="also write the rows to this file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.world != WORLD and "tpdp" in args.strategies:
        if len(args.strategies) == len(STRATEGIES):  # the default list: leave it out
            args.strategies = [s for s in args.strategies if s != "tpdp"]
        else:
            p.error(f"tpdp needs a 2 x 2 mesh: --world {WORLD}, got --world {args.world}")
    if args.netns and args.world != WORLD:
        p.error(f"--netns runs 2 ranks in each of two namespaces: --world {WORLD}")
    for size in args.size:
        cfg = SIZES[size]
        if cfg["batch"] % args.microbatches:
            p.error(
                f"--microbatches {args.microbatches} does not divide size {size}'s batch "
                f"of {cfg['batch']}"
            )
    return args


def main(argv=None) -> None:
    pin_threads(1)  # before numpy loads, here and (inherited) in every rank
    args = parse_args(argv)
    if args.worker:
        worker(
            args.worker,
            args.strategies,
            args.size,
            args.steps,
            args.microbatches,
            args.backend,
            2 if args.netns else 1,
            args.project,
        )
        return
    pair = None
    if args.netns:
        import netns

        if not netns.available():
            raise SystemExit("--netns needs root and `ip netns` (network namespaces)")
        pair = netns.NetnsPair()
    try:
        with tempfile.TemporaryDirectory() as out:
            per_rank = launch(args, out, pair)
    finally:
        if pair is not None:
            pair.close()
    rows = summarize(per_rank)
    # unrounded per-step bytes (mean over ranks) per row: [measured, analytical]
    wire = [
        [sum(c[k] for c in cells) / len(cells) for k in ("sent", "analytical")]
        for cells in zip(*per_rank)
    ]
    where = "2 hosts (network namespaces) x 2 ranks" if pair else "1 host"
    print(f"\n{args.world} ranks, {where}, backend {args.backend}; median of {args.steps} steps\n")
    print(table(rows, COLUMNS))
    for size in args.size:
        mine = [r for r in rows if r[0] == size]
        fast = min(mine, key=lambda r: float(r[3]))
        small = min(mine, key=lambda r: float(r[4]))
        print(f"{size}: fastest {fast[1]} ({fast[3]} ms), least memory {small[1]} ({small[4]} MiB)")
    result = {"columns": COLUMNS, "rows": rows, "bytes": wire}
    if args.project:
        from parallelism_projection import PROJECTION_COLUMNS, project

        prows, info = project(args, per_rank)
        print(
            f"\nα-β projection (this run's calibration): α {info['alpha_us']:.1f} µs, "
            f"{info['bandwidth_gbps']:.3g} GB/s; 1-rank forward+backward "
            + ", ".join(f"{s} {v:.1f} ms" for s, v in info["compute_ms"].items())
            + "; Adam step "
            + ", ".join(f"{s} {v:.1f} ms" for s, v in info["optim_ms"].items())
            + "\n"
        )
        print(table(prows, PROJECTION_COLUMNS))
        result.update(projection_columns=PROJECTION_COLUMNS, projection=prows, calibration=info)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
