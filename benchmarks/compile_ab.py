"""Eager ember, ember.compile without and with its graph rewrites, and torch eager, interleaved.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/compile_ab.py lstm --steps 15

One process runs the four configurations of a §7 workload step by step in turn, so machine load
hits all of them alike, and reports the median CPU time (``time.process_time``) and wall time of
a training step (forward + cross-entropy + backward + Adam), each as a ratio to torch eager. On
a shared machine CPU time is the steadier measure (engine.py's subprocess-per-framework
wall-clock ratios drift with the load between subprocesses).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _common import positive_int

from ember.distributed.experiment.workloads import WORKLOADS, build

MODES = ("eager", "compiled, no rewrites", "compiled", "torch")


def _setup(mode: str, name: str):
    import ember
    import ember._compile._frame as frame

    if mode == "torch":
        import torch as lib

        lib.set_num_threads(1)
    else:
        lib = ember
    lib.manual_seed(0)
    model, x, y, loss_fn = build(lib, name)
    opt = lib.optim.Adam(model.parameters(), lr=1e-3)
    if mode.startswith("compiled"):
        rewrites = mode == "compiled"
        saved = (
            frame.config.fuse_embedding_rnn,
            frame.config.fuse_conv_pool,
            frame.relu_after_max_pool,
        )
        frame.config.fuse_embedding_rnn = frame.config.fuse_conv_pool = rewrites
        if not rewrites:
            frame.relu_after_max_pool = lambda graph: 0
        try:
            model = lib.compile(model)
            model(x)  # compile now, under this mode's settings
        finally:
            (
                frame.config.fuse_embedding_rnn,
                frame.config.fuse_conv_pool,
                frame.relu_after_max_pool,
            ) = saved

    def step():
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(2):
        step()
    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workload", choices=[w for w in WORKLOADS if w != "tiny"])
    ap.add_argument("--steps", type=positive_int, default=15)
    args = ap.parse_args()
    steps = {m: _setup(m, args.workload) for m in MODES}
    cpu = {m: [] for m in MODES}
    wall = {m: [] for m in MODES}
    for _ in range(args.steps):
        for m, step in steps.items():
            c0, t0 = time.process_time(), time.perf_counter()
            step()
            wall[m].append(time.perf_counter() - t0)
            cpu[m].append(time.process_time() - c0)
    ct, wt = np.median(cpu["torch"]), np.median(wall["torch"])
    print(
        f"{'workload':12s} {'mode':22s} {'CPU ms':>8s} {'/torch':>7s} {'wall ms':>8s} "
        f"{'/torch':>7s}"
    )
    for m in MODES:
        c, w = np.median(cpu[m]), np.median(wall[m])
        print(
            f"{args.workload:12s} {m:22s} {c * 1e3:8.1f} {c / ct:7.2f} {w * 1e3:8.1f} {w / wt:7.2f}"
        )


if __name__ == "__main__":
    main()
