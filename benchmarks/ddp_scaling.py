"""DDP weak scaling on 1 and 2 workers: ember's Trainer next to torch DDP over gloo, one run.

    python benchmarks/ddp_scaling.py                        # mlp + transformer, ~4 minutes
    python benchmarks/ddp_scaling.py --repeat 5             # each cell 5 times
    python benchmarks/ddp_scaling.py --workloads mlp --frameworks ember --first-bucket-mb 25
    python benchmarks/ddp_scaling.py --workloads mlp --frameworks ember-procs torch  # no Ray
    python benchmarks/ddp_scaling.py --workloads mlp --frameworks ember-procs \
        --comm-hook none fp16 bf16 powersgd                 # DDP communication hooks

Workloads are DESIGN.md §7's (``ember.distributed.experiment.workloads.build``, the same code
for both frameworks), each worker on its own fixed in-memory batch of the §7 size (mlp 128,
transformer 32), so 2 workers do twice the samples per step (weak scaling). A step is
zero_grad + forward + cross-entropy + backward (DDP's bucketed gradient allreduce included) +
Adam(lr=1e-3); no data loading. Every process runs one thread (OMP/OPENBLAS/MKL_NUM_THREADS=1,
``torch.set_num_threads(1)``).

* ember: ``Trainer`` with ``ScalingConfig(num_workers=N)`` (Ray actors, ember's process group,
  ``prepare_model`` = DDP; with 1 worker the plain model, as in Ray Train).
* torch: N subprocesses with ``init_process_group("gloo")`` and ``DistributedDataParallel``
  (with 1 worker the plain model, no process group).
* ember-procs (on request): ember's DDP run the same way as torch, in plain processes. Run
  without ``ember`` in ``--frameworks`` (so that no Ray is started), it shows what Ray's
  daemons cost the Trainer's figures on a machine whose cores the workers fill; with
  ``ember`` too, the daemons of the Trainer's Ray run alongside it.

A step's time is the slowest rank's; throughput = N × batch / the median step over the timed
steps; scaling efficiency = throughput(2) / (2 × throughput(1)). Each repeat runs 1 and then 2
workers back to back, and the efficiency reported is the median over repeats of each repeat's
own ratio (with the lowest and highest): this machine's speed drifts by 10% or more over
minutes, which the pairing cancels and a ratio of medians taken far apart does not. The other
columns come from the repeat of median throughput. The breakdown columns are
medians per step on the slowest rank: forward (+ loss), backward (which ends with DDP waiting
for its buckets), the part of it spent in that wait (ember only), the optimizer step, and the
process CPU time per step (all threads; near the step time means the process never idles).

Startup: seconds from ``Trainer.fit()`` called until the slower of 2 workers has finished its
first training step (wall-clock stamps from inside the loop; one machine, one clock). "cold" is
the script's first ``fit()``, which also starts a local Ray; "warm" is later fits (Ray running,
fresh actors). Targets (issue 6): ember efficiency >= 0.85 on mlp; startup <= 6 s.

The machine has 2 cores shared with other work: the load average is printed with every row.
With 2 workers on 2 cores there is no idle core to run communication on, so DDP's cost is the
CPU it takes (compare "cpu ms" of 1 and 2 workers), and any other load slows the 2-worker runs
more than the 1-worker ones.

``--comm-hook``: each framework once per hook (``none``: DDP's own allreduce; ``fp16``,
``bf16``: ``default_hooks.fp16/bf16_compress_hook``; ``powersgd``: ``powerSGD_hook`` at rank 1,
compressing from the first timed step; torch runs its own hooks, its bf16 hook under another
name since torch refuses it by name without NCCL). "wire KiB" is what each rank hands to the
allreduces per step (a ring sends 2 (N - 1) / N of it): the gradients at their width, for
PowerSGD its P and Q plus the tensors it does not compress.

``--first-bucket-mb`` sets ember DDP's first bucket (PyTorch's 1 MiB by default); 25 puts
the mlp's 2 MiB of gradients in a single bucket, reduced once at the end of backward.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import nonneg_int, pin_threads, positive_float, positive_int  # noqa: E402
from _ddp_scaling_report import PHASES, print_report, summarise  # noqa: E402

pin_threads(1)  # before numpy / torch load, in this process and (inherited) in every child

import argparse  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

WORKLOADS = ("mlp", "transformer")
BATCH = {"mlp": 128, "transformer": 32}  # per worker (weak scaling), DESIGN.md §7
HOOKS = ("none", "fp16", "bf16", "powersgd")


def register_comm_hook(lib: str, model, hook: str, warmup: int) -> int:
    """Register ``hook`` on the DDP ``model`` (``lib``'s own hooks); the bytes each rank hands
    to the allreduces per step."""
    params = [p for p in model.parameters() if p.requires_grad]
    numel = sum(p.numel() for p in params)
    if hook == "none":
        return 4 * numel
    if lib == "torch":
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
    else:
        from ember.distributed.algorithms.ddp_comm_hooks import default_hooks, powerSGD_hook
    if hook in ("fp16", "bf16"):
        chosen = getattr(default_hooks, f"{hook}_compress_hook")

        def compress(state, bucket):  # (named otherwise: torch refuses bf16 by name on gloo)
            return chosen(state, bucket)

        model.register_comm_hook(None, compress)
        return 2 * numel
    state = powerSGD_hook.PowerSGDState(
        None, matrix_approximation_rank=1, start_powerSGD_iter=max(2, warmup)
    )
    model.register_comm_hook(state, powerSGD_hook.powerSGD_hook)
    sent = 0
    for p in params:  # P (n x 1) and Q (m x 1) of each matrix that compresses 2x, else itself
        n = p.shape[0] if p.dim() else 1
        m = p.numel() // max(n, 1)
        sent += n + m if 2 * (n + m) < n * m else n * m
    return 4 * sent


# ---- the timed loop, shared by both frameworks -----------------------------------------------
def timed_steps(model, x, y, loss_fn, opt, warmup: int, steps: int, waits: list) -> dict:
    """Run ``warmup + steps`` training steps; per timed step: wall seconds and phases.

    ``waits`` collects DDP's bucket waits (filled by ember's tracer hook; stays empty for torch).
    Also returns the wall-clock times at which the first step started and ended.
    """
    from time import perf_counter, process_time

    out = {k: [] for k in ("step",) + PHASES}
    first = None
    for i in range(warmup + steps):
        del waits[:]
        c0, t0 = process_time(), perf_counter()
        stamp = time.time()
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        t1 = perf_counter()
        loss.backward()
        t2 = perf_counter()
        opt.step()
        t3, c3 = perf_counter(), process_time()
        if first is None:
            first = (stamp, time.time())
        if i >= warmup:
            for k, v in (
                ("step", t3 - t0),
                ("fwd", t1 - t0),
                ("bwd", t2 - t1),
                ("wait", sum(waits)),
                ("opt", t3 - t2),
                ("cpu", c3 - c0),
            ):
                out[k].append(v)
    out["first_step"] = first
    out["loss"] = float(loss.item())
    return out


def ember_loop(config: dict) -> None:
    """The Trainer's per-worker function: build, prepare, time; rank 0 reports all ranks."""
    entered = time.time()
    import ember
    import ember.distributed as dist
    from ember.distributed import train
    from ember.distributed.experiment.workloads import build
    from ember.distributed.parallel import _ddp_layout, ddp

    rank = train.get_context().get_world_rank()
    ember.manual_seed(config["seed"] + rank)  # each rank its own batch (DDP syncs the weights)
    model, x, y, loss_fn = build(ember, config["workload"], config["batch"])
    if config["first_bucket_mb"] is not None:  # DDP's first (small) bucket, PyTorch's 1 MiB
        _ddp_layout._FIRST_BUCKET_BYTES = int(config["first_bucket_mb"] * (1 << 20))
    model = train.prepare_model(model)
    wire = 0
    if dist.get_world_size() > 1:
        wire = register_comm_hook("ember", model, config["comm_hook"], config["warmup"])
    opt = ember.optim.Adam(model.parameters(), lr=1e-3)
    waits: list = []
    ddp._tracer = lambda name, start, end, lane, nbytes: (
        waits.append(end - start) if name.startswith("wait") else None
    )
    try:
        out = timed_steps(model, x, y, loss_fn, opt, config["warmup"], config["steps"], waits)
    finally:
        ddp._tracer = None
    out["entered"], out["wire"] = entered, wire
    ranks = [None] * dist.get_world_size()
    dist.all_gather_object(ranks, out)  # after the timed steps: every rank's figures to rank 0
    train.report({"ranks": ranks})


def run_ember(workload: str, workers: int, args, storage: str, hook: str = "none") -> dict:
    from ember.distributed import train

    config = {
        "workload": workload,
        "batch": BATCH[workload],
        "warmup": args.warmup,
        "steps": args.steps,
        "seed": args.seed,
        "comm_hook": hook,
        "first_bucket_mb": getattr(args, "first_bucket_mb", None),
    }
    trainer = train.Trainer(
        ember_loop,
        config,
        scaling_config=train.ScalingConfig(num_workers=workers),
        run_config=train.RunConfig(
            name=f"{workload}_{workers}_{hook}",
            storage_path=storage,
            verbose=0,
            log_to_tensorboard=False,
        ),
    )
    called = time.time()
    result = trainer.fit()
    return summarise(result.metrics["ranks"], workers, BATCH[workload], called)


# ---- one subprocess per rank: torch DDP over gloo, and ember without Ray ----------------------
def proc_child(cfg: dict) -> None:
    """One rank of a plain-process run: torch DDP over gloo, or (``cfg["lib"] == "ember"``)
    ember's DDP with ``init_process_group`` and no Ray, which shows what Ray costs the
    Trainer's figures."""
    if cfg["lib"] == "torch":
        import torch as lib
        import torch.distributed as dist
        from torch.nn.parallel import DistributedDataParallel

        lib.set_num_threads(1)
    else:
        import ember as lib
        import ember.distributed as dist
        from ember.distributed import DistributedDataParallel
        from ember.distributed.parallel import ddp

        os.environ.setdefault("EMBER_TOKEN", "ddp_scaling")
    from ember.distributed.experiment.workloads import build

    rank, world = cfg["rank"], cfg["workers"]
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{cfg['port']}", rank=rank, world_size=world
        )
    lib.manual_seed(cfg["seed"] + rank)
    model, x, y, loss_fn = build(lib, cfg["workload"], cfg["batch"])
    wire = 0
    if world > 1:
        model = DistributedDataParallel(model)
        wire = register_comm_hook(cfg["lib"], model, cfg["comm_hook"], cfg["warmup"])
    opt = lib.optim.Adam(model.parameters(), lr=1e-3)
    waits: list = []
    if cfg["lib"] == "ember":
        ddp._tracer = lambda name, start, end, lane, nbytes: (
            waits.append(end - start) if name.startswith("wait") else None
        )
    out = timed_steps(model, x, y, loss_fn, opt, cfg["warmup"], cfg["steps"], waits)
    out["wire"] = wire
    ranks = [out]
    if world > 1:
        ranks = [None] * world
        dist.all_gather_object(ranks, out)
    if rank == 0:  # before the teardown, which gloo sometimes ends with std::terminate
        print("RESULT " + json.dumps(ranks), flush=True)
    if world > 1:
        dist.destroy_process_group()


def run_procs(lib: str, workload: str, workers: int, args, hook: str = "none") -> dict:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(workers):
        cfg = {
            "lib": lib,
            "workload": workload,
            "batch": BATCH[workload],
            "warmup": args.warmup,
            "steps": args.steps,
            "seed": args.seed,
            "rank": rank,
            "workers": workers,
            "port": port,
            "comm_hook": hook,
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, __file__, "--_child", json.dumps(cfg)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=600) for p in procs]
    lines = [ln for ln in outs[0][0].splitlines() if ln.startswith("RESULT ")]
    for rank, (p, (_, err)) in enumerate(zip(procs, outs)):
        if p.returncode != 0 and not lines:
            raise SystemExit(f"{lib} rank {rank} of {workers} ({workload}) failed:\n{err}")
        if p.returncode != 0:  # measured, then crashed in gloo's teardown
            print(
                f"  ({lib} rank {rank} exited with {p.returncode} after reporting: "
                f"{err.strip().splitlines()[-1] if err.strip() else ''})",
                flush=True,
            )
    line = lines[-1]
    return summarise(json.loads(line[len("RESULT ") :]), workers, BATCH[workload], None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    ap.add_argument(
        "--frameworks",
        nargs="+",
        default=["ember", "torch"],
        choices=["ember", "torch", "ember-procs"],
        help="ember-procs: ember's DDP in plain processes, without Ray (what Ray "
        "costs the Trainer's figures)",
    )
    ap.add_argument("--steps", type=positive_int, default=100, help="timed steps per run")
    ap.add_argument("--warmup", type=nonneg_int, default=10, help="untimed steps first")
    ap.add_argument(
        "--repeat",
        type=positive_int,
        default=3,
        help="measure every cell this many times, interleaved (see above)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--first-bucket-mb",
        type=positive_float,
        default=None,
        help="size of ember DDP's first gradient bucket (default: DDP's, 1 MiB as "
        "in PyTorch); 25 puts the whole mlp in one bucket",
    )
    ap.add_argument(
        "--comm-hook",
        nargs="+",
        default=["none"],
        choices=HOOKS,
        help="DDP communication hooks to run each framework with (see above)",
    )
    ap.add_argument("--json", help="write every figure here too")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        proc_child(json.loads(args._child))
        return
    if args.steps < 1 or args.warmup < 0 or args.repeat < 1:
        ap.error("--steps and --repeat must be >= 1, --warmup >= 0")

    load0 = os.getloadavg()
    print(
        f"load average at the start: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} "
        f"({os.cpu_count()} cores)",
        flush=True,
    )
    results: dict[tuple, dict] = {}
    startup: dict[str, list] = {"cold": [], "warm": []}
    with tempfile.TemporaryDirectory(prefix="ember_ddp_scaling_") as storage:
        if "ember" in args.frameworks:
            # Cold start first: this fit() also starts the local Ray, as a user's script does.
            r = run_ember(
                "mlp",
                2,
                argparse.Namespace(**{**vars(args), "steps": 1, "warmup": 0}),
                storage + "/cold",
            )
            startup["cold"].append(r)
        runs: dict[tuple, list] = {}
        for rep in range(args.repeat):
            for name in args.workloads:
                # interleaved, so all see similar load; a hook matters on 2 workers only (its
                # runs pair with the framework's plain 1-worker run)
                for workers, fw, hook in [
                    (w, f, h)
                    for w in (1, 2)
                    for f in args.frameworks
                    for h in (args.comm_hook if w > 1 else ["none"])
                ]:
                    r = (
                        run_ember(name, workers, args, f"{storage}/{rep}", hook)
                        if fw == "ember"
                        else run_procs(
                            "torch" if fw == "torch" else "ember", name, workers, args, hook
                        )
                    )
                    fw = fw if hook == "none" else f"{fw}+{hook}"
                    runs.setdefault((name, fw, workers), []).append(r)
                    if fw == "ember" and workers == 2:
                        startup["warm"].append(r)
                    print(
                        f"  {name:11s} {fw:5s} {workers} worker(s): "
                        f"{r['step_ms']:7.1f} ms/step  {r['samples_per_s']:8.0f} samples/s"
                        f"  (load {r['load']:.2f})",
                        flush=True,
                    )
        for key, rs in runs.items():  # the run of median throughput (the lower one of two)
            results[key] = sorted(rs, key=lambda r: r["samples_per_s"])[(len(rs) - 1) // 2]

    print_report(args, results, runs, startup, load0)


if __name__ == "__main__":
    main()
