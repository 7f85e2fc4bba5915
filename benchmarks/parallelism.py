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

# numpy and ember load only inside functions, after main() has pinned the BLAS threads

STRATEGIES = ("dp", "fsdp", "tp", "pp", "tpdp")
BACKENDS = ("grpc", "shm")
WORLD = 4
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
SMALL_BYTES = 64 << 10  # ember's collectives exchange buffers up to this size directly
# Allreduces of an activation per block under TP: the attention output and fc2 (rowwise) in
# forward; in backward the input gradient of each colwise linear (q, k, v, fc1), since each
# style wraps the replicated plain-tensor input on its own (Megatron's fused qkv needs 4)
TP_ALLREDUCES = 6
PP_HEADER = 64 * 8  # a pipeline stage sends its output's shape (64 int64) once per step


# ---- the model --------------------------------------------------------------------------------
def build_gpt(cfg: dict):
    """The GPT, with the same initial weights on every rank."""
    import numpy as np

    import ember
    from ember import nn

    d, heads, seq = cfg["d"], cfg["heads"], cfg["seq"]
    mask = np.triu(np.full((seq, seq), -1e9, dtype=np.float32), 1)

    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(d, d, bias=False)
            self.k = nn.Linear(d, d, bias=False)
            self.v = nn.Linear(d, d, bias=False)
            self.o = nn.Linear(d, d, bias=False)

        def forward(self, x):
            b, s, _ = x.shape
            hd = d // heads  # under TP each rank holds heads / tp of them: split by head size

            def split(t):
                return t.view(b, s, -1, hd).transpose(1, 2)

            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            att = q @ k.transpose(-2, -1) * (hd**-0.5) + ember.tensor(mask[:s, :s])
            y = att.softmax(-1) @ v
            return self.o(y.transpose(1, 2).reshape(b, s, -1))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.attn = nn.LayerNorm(d), Attention()
            self.ln2 = nn.LayerNorm(d)
            self.mlp = nn.Sequential(
                nn.Linear(d, 4 * d, bias=False), nn.GELU(), nn.Linear(4 * d, d, bias=False)
            )

        def forward(self, x):
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(cfg["vocab"], d)
            self.pos = nn.Embedding(seq, d)
            self.blocks = nn.ModuleList([Block() for _ in range(cfg["layers"])])
            self.ln_f = nn.LayerNorm(d)
            self.head = nn.Linear(d, cfg["vocab"], bias=False)

        def forward(self, tokens):
            h = self.tok(tokens) + self.pos.weight[: tokens.shape[1]]
            for blk in self.blocks:
                h = blk(h)
            return self.head(self.ln_f(h))

    ember.manual_seed(0)
    return GPT()


TP_PLAN = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.0", "mlp.2")


def _tp_blocks(model, mesh) -> None:
    from ember.distributed.tensor.parallel import (
        ColwiseParallel,
        RowwiseParallel,
        parallelize_module,
    )

    plan = {k: ColwiseParallel() for k in ("attn.q", "attn.k", "attn.v", "mlp.0")}
    plan.update({k: RowwiseParallel() for k in ("attn.o", "mlp.2")})
    for blk in model.blocks:
        parallelize_module(blk, mesh, plan)


# ---- the analytical count ---------------------------------------------------------------------
# DDP's bucket rule, one definition for this count and ember experiment's projection
from ember.distributed.experiment.parallel_cost import ddp_buckets  # noqa: E402


def allreduce_bytes(nbytes: int, n: int, hosts: int = 1) -> float:
    """Mean bytes a rank sends in one allreduce of ``nbytes`` over ``n`` ranks.

    On one host: a ring (2(n-1)/n x the buffer) above ``SMALL_BYTES``, a direct exchange
    ((n-1) x) at or below it. Over ``hosts`` hosts with several ranks on each, ember reduces
    within each host to its first rank, allreduces across those, and broadcasts back; modelled
    here for 2 ranks per host: per host, the reduce sends 1.5 x (a reduce-scatter, then the
    half to the leader; 1 x when small), the leaders' allreduce 1 x and the broadcast 1 x.
    """
    if n == 1:
        return 0.0
    small = nbytes <= SMALL_BYTES
    if hosts > 1 and n // hosts == 2:
        return ((1.0 if small else 1.5) + 1 + 1) * nbytes / 2
    return (n - 1) * nbytes if small else 2 * (n - 1) / n * nbytes


def analytical(
    strategy: str,
    cfg: dict,
    param_bytes: list[int],
    local_bytes: list[int] | None = None,
    hosts: int = 1,
    n: int = WORLD,
) -> float:
    """Bytes each rank sends per step (mean over the ``n`` ranks), float32.

    G: gradient bytes (= parameter bytes); R: the bytes of the parameters outside every FSDP
    unit (position embedding, final norm), which stay gathered from forward to backward;
    A = batch x seq x d x 4, one activation of the whole batch; L layers. ``local_bytes``: a
    tp x dp rank's parameter bytes (its shards of the block linears), which its dp
    allreduces carry. ``hosts``: 2 with ``--netns`` (its tp and dp groups keep to one host
    or take one rank from each, so only DP's and TP's allreduces change). The formulas are
    in docs/distributed.md ("Parallelism benchmark").
    """
    g = sum(param_bytes)
    act = cfg["batch"] * cfg["seq"] * cfg["d"] * 4
    layers = cfg["layers"]
    if strategy == "dp":  # one allreduce per bucket
        return sum(allreduce_bytes(b, n, hosts) for b in ddp_buckets(param_bytes))
    if strategy == "fsdp":  # per unit: all-gather fwd, all-gather bwd, reduce-scatter
        root = (cfg["seq"] * cfg["d"] + 2 * cfg["d"]) * 4
        return 3 * (n - 1) / n * g - (n - 1) / n * root
    if strategy == "tp":  # per block: 2 rowwise outputs fwd; q, k, v, fc1 input grads bwd
        return TP_ALLREDUCES * layers * allreduce_bytes(act, n, hosts)
    if strategy == "pp":  # each of the p-1 cuts: activations forward, their grads back
        return (2 * (n - 1) * act + (n - 1) * PP_HEADER) / n
    if strategy == "tpdp":  # TP on n/2 ranks over batch/2, then each local grad over dp (2)
        tp = TP_ALLREDUCES * layers * allreduce_bytes(act // 2, n // 2)
        return tp + sum(allreduce_bytes(b, 2) for b in local_bytes)
    raise ValueError(f"unknown strategy {strategy!r}")


# ---- one rank ---------------------------------------------------------------------------------
def _setup(strategy: str, cfg: dict, microbatches: int):
    """(step function, objects to measure, local parameter bytes) for one strategy."""
    import numpy as np

    import ember
    import ember.distributed as dist
    from ember import nn
    from ember.distributed.fsdp import FullyShardedDataParallel as FSDP
    from ember.distributed.tensor import init_device_mesh
    from ember.nn.parallel import DistributedDataParallel as DDP

    rank, world, v, b = dist.get_rank(), dist.get_world_size(), cfg["vocab"], cfg["batch"]
    rng = np.random.default_rng(0)  # one global batch, the same on every rank
    tokens = rng.integers(0, v, (b, cfg["seq"]))
    targets = rng.integers(0, v, (b, cfg["seq"]))

    def rows(parts: int, i: int):
        per = b // parts
        return ember.tensor(tokens[i * per : (i + 1) * per]), ember.tensor(
            targets[i * per : (i + 1) * per]
        )

    def loss_fn(logits, y):
        return nn.functional.cross_entropy(logits.reshape(-1, v), y.reshape(-1))

    model = build_gpt(cfg)
    if strategy == "pp":
        stage, n = rank, world
        per = cfg["layers"] // n
        mod = _Stage(model, stage * per, (stage + 1) * per, stage == 0, stage == n - 1)
        from ember.distributed.pipelining import PipelineStage, Schedule1F1B

        sched = Schedule1F1B(PipelineStage(mod, stage, n, "cpu"), microbatches, loss_fn=loss_fn)
        opt = ember.optim.Adam(mod.parameters(), lr=1e-3)
        x, y = rows(1, 0)

        def step():
            opt.zero_grad()
            if stage == 0:
                sched.step(x)
            elif stage == n - 1:
                sched.step(target=y)
            else:
                sched.step()
            opt.step()

        return step, (mod, opt), None
    local = None
    if strategy == "dp":
        model, x_y = DDP(model), rows(world, rank)
    elif strategy == "fsdp":
        block, top = type(model.blocks[0]), {id(model.tok), id(model.head)}

        def policy(module, recurse, nonwrapped_numel):
            return recurse or isinstance(module, block) or id(module) in top

        model, x_y = FSDP(model, auto_wrap_policy=policy), rows(world, rank)
    elif strategy == "tp":
        _tp_blocks(model, init_device_mesh("cpu", (world,), mesh_dim_names=("tp",)))
        x_y = rows(1, 0)
    else:  # tpdp
        mesh = init_device_mesh("cpu", (2, world // 2), mesh_dim_names=("dp", "tp"))
        _tp_blocks(model, mesh["tp"])
        x_y = rows(2, mesh.get_local_rank("dp"))
        local = [p.numel() * 4 for p in model.parameters()]
        dp_group = mesh.get_group("dp")
    opt = ember.optim.Adam(model.parameters(), lr=1e-3)
    x, y = x_y

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        if strategy == "tpdp":  # average over the dp row, one allreduce per parameter (the
            # analytical count's model; DDP(model, device_mesh=mesh["dp"]) buckets them instead)
            for p in model.parameters():
                dist.all_reduce(p.grad, op=dist.ReduceOp.AVG, group=dp_group)
        opt.step()

    return step, (model, opt), local


def _stage_class():
    from ember import nn

    class Stage(nn.Module):
        """Blocks ``lo:hi`` of a GPT; the first stage also embeds, the last also projects."""

        def __init__(self, gpt, lo: int, hi: int, first: bool, last: bool):
            super().__init__()
            self.first, self.last = first, last
            if first:
                self.tok, self.pos = gpt.tok, gpt.pos
            self.blocks = nn.ModuleList(list(gpt.blocks)[lo:hi])
            if last:
                self.ln_f, self.head = gpt.ln_f, gpt.head

        def forward(self, h):
            if self.first:
                h = self.tok(h) + self.pos.weight[: h.shape[1]]
            for blk in self.blocks:
                h = blk(h)
            return self.head(self.ln_f(h)) if self.last else h

    return Stage


def _Stage(*args):
    return _stage_class()(*args)


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
