"""Seconds from the launch command to the first training step and to exit, 2 local workers:
``ember launch --workers 2`` (embedded Ray, DDP on ember's process group) next to
``torchrun --nproc-per-node 2`` running the same PyTorch DDP script (gloo), in the same run.

    python benchmarks/launch.py [--repeat 3] [--steps 5]

The workload is DESIGN.md's mlp (784-512-256-10, batch 128, Adam 1e-3, cross-entropy), one
thread per worker. "first step" is when the slower rank has finished its first optimizer step
(each rank prints a wall-clock stamp; same machine, same clock). Target (issue 8): ember <= 6 s
to the first step.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import positive_int, table  # noqa: E402

EMBER = """
import sys, time
import numpy as np
import ember
import ember.distributed as dist
from ember import nn
from ember.distributed.parallel.ddp import DistributedDataParallel as DDP

dist.init_process_group()
rank = dist.get_rank()
ember.manual_seed(0)
model = DDP(nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                          nn.Linear(256, 10)))
opt = ember.optim.Adam(model.parameters(), lr=1e-3)
rng = np.random.default_rng(rank)
x = ember.tensor(rng.standard_normal((128, 784)).astype(np.float32))
y = ember.tensor(rng.integers(0, 10, 128))
for step in range(int(sys.argv[1])):
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step == 0:
        print(f"FIRST_STEP {time.time():.6f}", flush=True)
dist.destroy_process_group()
"""

TORCH = """
import sys, time
import numpy as np
import torch
import torch.distributed as dist
from torch import nn

torch.set_num_threads(1)
dist.init_process_group("gloo")
rank = dist.get_rank()
torch.manual_seed(0)
model = nn.parallel.DistributedDataParallel(nn.Sequential(
    nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10)))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
rng = np.random.default_rng(rank)
x = torch.tensor(rng.standard_normal((128, 784)).astype(np.float32))
y = torch.tensor(rng.integers(0, 10, 128))
for step in range(int(sys.argv[1])):
    loss = nn.functional.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step == 0:
        print(f"FIRST_STEP {time.time():.6f}", flush=True)
dist.destroy_process_group()
"""


def _time(cmd: list, env: dict) -> tuple[float, float]:
    """(seconds to the slower rank's first step, seconds to exit) of one run of ``cmd``."""
    t0 = time.time()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    t_exit = time.time() - t0
    # ranks share torchrun's stdout, so two stamps may land on one line
    stamps = [float(v) for v in re.findall(r"FIRST_STEP (\d+\.\d+)", r.stdout)]
    if r.returncode != 0 or len(stamps) != 2:
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
        )
    return max(stamps) - t0, t_exit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--repeat", type=positive_int, default=3, help="runs per launcher (median shown)"
    )
    p.add_argument("--steps", type=positive_int, default=5, help="training steps per run")
    args = p.parse_args()
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    for var in ("RAY_ADDRESS", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        ember_script, torch_script = Path(d, "ember_mlp.py"), Path(d, "torch_mlp.py")
        ember_script.write_text(EMBER)
        torch_script.write_text(TORCH)
        launchers = {
            "ember launch --workers 2": [
                sys.executable,
                "-m",
                "ember.launcher.cli",
                "launch",
                "--workers",
                "2",
                str(ember_script),
                str(args.steps),
            ],
        }
        try:
            import torch  # noqa: F401

            launchers["torchrun --nproc-per-node 2"] = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc-per-node",
                "2",
                str(torch_script),
                str(args.steps),
            ]
        except ImportError:
            print("(torch not installed: torchrun row skipped)")
        results = {name: [] for name in launchers}
        for _ in range(args.repeat):  # interleaved, so that machine load hits both alike
            for name, cmd in launchers.items():
                results[name].append(_time(cmd, env))
        for name, runs in results.items():
            first = statistics.median(r[0] for r in runs)
            done = statistics.median(r[1] for r in runs)
            rows.append(
                [
                    name,
                    f"{first:.2f}",
                    f"{done:.2f}",
                    f"{min(r[0] for r in runs):.2f}-{max(r[0] for r in runs):.2f}",
                ]
            )
    print(
        f"2 local workers, mlp, {args.steps} steps, median of {args.repeat} runs "
        f"({os.cpu_count()} cores)"
    )
    print(table(rows, ["launcher", "s to first step", "s to exit", "first step range"]))


if __name__ == "__main__":
    main()
