"""Training-step speed of the DESIGN.md §7 workloads, ember vs PyTorch in the same run.

    python benchmarks/engine.py                 # all workloads, 1 and 2 threads
    python benchmarks/engine.py --workloads mlp cnn --threads 1 --steps 20
    python benchmarks/engine.py --device cuda    # CuPy against torch on the GPU

Each (framework, threads) pair runs in its own subprocess, since BLAS thread pools are fixed at
import. A step is forward + cross-entropy + backward + Adam(lr=1e-3). Targets (issue 3): ratio
<= 1.5 on mlp and transformer, <= 2.5 on cnn and lstm. With ``--device cuda`` each step ends
in a device synchronisation, so the time is the GPU's as well as the host's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from ember.distributed.experiment.workloads import build

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
WORKLOADS = ("mlp", "cnn", "lstm", "transformer")  # DESIGN.md §7 (the builder lives in ember)


def run_child(framework: str, threads: int, workloads: list[str], steps: int,
              device: str = "cpu", batch: int | None = None) -> dict:
    """Inside a subprocess: ms/step per workload (median of ``steps`` after warm-up)."""
    import time

    import numpy as np

    if framework == "torch":
        import torch as lib

        lib.set_num_threads(threads)
    else:
        import ember as lib
    lib.manual_seed(0)
    sync = lib.cuda.synchronize if device == "cuda" else (lambda: None)
    out = {}
    for name in workloads:
        model, x, y, loss_fn = build(lib, name, batch)
        model.to(device)
        x, y = x.to(device), y.to(device)
        opt = lib.optim.Adam(model.parameters(), lr=1e-3)
        model.train()

        def step(model=model, opt=opt, x=x, y=y, loss_fn=loss_fn):
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            sync()

        for _ in range(3):
            step()
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=WORKLOADS)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--batch", type=int, help="batch size (default: each workload's §7 batch)")
    ap.add_argument("--json", help="write the results here too")
    ap.add_argument("--_child", nargs=2, metavar=("FRAMEWORK", "THREADS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        fw, th = args._child[0], int(args._child[1])
        print(json.dumps(run_child(fw, th, args.workloads, args.steps, args.device,
                                   args.batch)))
        return
    from _common import table

    results = {}
    for threads in args.threads:
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        for fw in ("ember", "torch"):
            cmd = [sys.executable, __file__, "--_child", fw, str(threads), "--steps",
                   str(args.steps), "--device", args.device, "--workloads", *args.workloads]
            if args.batch:
                cmd += ["--batch", str(args.batch)]
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if r.returncode != 0:
                raise SystemExit(f"{fw} with {threads} thread(s) failed:\n{r.stderr}")
            results[(fw, threads)] = json.loads(r.stdout.strip().splitlines()[-1])
    rows = []
    for threads in args.threads:
        for name in args.workloads:
            e, t = results[("ember", threads)][name], results[("torch", threads)][name]
            rows.append([name, threads, f"{e:.1f}", f"{t:.1f}", f"{e / t:.2f}"])
    print(f"device: {args.device}")
    print(table(rows, ["workload", "threads", "ember ms/step", "torch ms/step", "ratio"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{k[0]}/{k[1]}": v for k, v in results.items()}, f, indent=2)


if __name__ == "__main__":
    main()
