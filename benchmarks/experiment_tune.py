"""``ember experiment`` on Ray Tune vs one trial after another: wall time of N short trials.

Every trial is the same 1-worker Trainer run (workload, steps); three ways of running them, each
on a fresh local Ray of ``--cpus`` logical CPUs:

- sequential: today's runner, ``experiment.run`` over ``repetitions: N`` (one point at a time);
- tune x1: ``experiment.tune`` with ``max_concurrent_trials: 1`` (Tune's own overhead);
- tune xK: ``experiment.tune`` with ``max_concurrent_trials: K``.

    python benchmarks/experiment_tune.py --trials 8 --cpus 2 --concurrent 2

Target (issue #26): tune x2 <= 0.6x the sequential wall time with 8 trials on 2 CPUs.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import int_at_least, table  # noqa: E402


def _spec(args, search: dict | None) -> dict:
    spec = {
        "name": "bench",
        "workload": args.workload,
        "steps": args.steps,
        "warmup": 2,
        "compute_steps": 2,
        "trace_steps": 0,
        "calibration": {"sizes_kib": [4], "iters": 1},
        "grid": {"workers": [1]},
        "repetitions": args.trials if search is None else 1,
    }
    if search is not None:
        spec["search"] = search
    return spec


def _timed(fn) -> float:
    import ray

    from ember.distributed.train._internal.ray_cluster import shutdown_if_started

    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="error")
    try:
        t0 = time.perf_counter()
        result = fn()
        wall = time.perf_counter() - t0
    finally:
        shutdown_if_started()
        ray.shutdown()
    bad = result.failed
    if bad:
        raise SystemExit(f"trials failed: {bad}")
    return wall


def main(argv=None) -> None:
    global args
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int_at_least(1), default=8)
    p.add_argument("--cpus", type=int_at_least(1), default=2)
    p.add_argument("--concurrent", type=int_at_least(1), default=2)
    p.add_argument("--workload", default="mlp")
    p.add_argument("--steps", type=int_at_least(2), default=20)
    args = p.parse_args(argv)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ember.distributed import experiment

    out = tempfile.mkdtemp(prefix="ember_bench_tune_")
    load = os.getloadavg()[0]
    walls = {}
    walls["sequential (run)"] = _timed(
        lambda: experiment.run(
            _spec(args, None), os.path.join(out, "seq"), verbose=False, report=False
        )
    )
    # N identical trials: bucket sizes far above the model's gradients change nothing
    caps = {"grid_search": [25.0 + i for i in range(args.trials)]}
    for k in sorted({1, args.concurrent}):
        spec = _spec(
            args,
            {
                "space": {"bucket_cap_mb": caps},
                "max_concurrent_trials": k,
                "report_every": args.steps,
            },
        )
        walls[f"tune x{k}"] = _timed(
            functools.partial(
                experiment.tune, spec, os.path.join(out, f"tune{k}"), verbose=False, report=False
            )
        )
    shutil.rmtree(out, ignore_errors=True)
    base = walls["sequential (run)"]
    rows = [[name, f"{w:.1f}", f"{w / base:.2f}x"] for name, w in walls.items()]
    print(
        f"{args.trials} trials of {args.workload} ({args.steps} steps, 1 worker) on "
        f"{args.cpus} CPUs; 1-minute load average before: {load:.1f}"
    )
    print(table(rows, ["how", "wall s", "vs sequential"]))


if __name__ == "__main__":
    main()
