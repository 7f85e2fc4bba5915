"""ember.vision models against torchvision: eval forward and one SGD training step.

torchvision lives in a side environment (see docs/vision.md), so its side runs there as a
subprocess on the same machine and thread count; both use the same shapes.

    python benchmarks/vision_models.py                                  # resnet18, b8 64^2
    python benchmarks/vision_models.py --models resnet18 mobilenet_v3_small --batch 16 \\
        --size 224 --tv-python /work/tvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def _bench(step, repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(lib: str, models: list[str], batch: int, size: int, repeats: int, threads: int) -> dict:
    import numpy as np

    if lib == "torchvision":
        import torch
        import torchvision.models as zoo

        torch.set_num_threads(threads)
        fw, nn_f = torch, torch.nn.functional
    else:
        import ember
        from ember.vision import models as zoo

        ember.set_num_threads(threads)
        fw, nn_f = ember, ember.nn.functional
    x = fw.from_numpy(
        np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    )
    y = fw.from_numpy(np.arange(batch, dtype=np.int64) % 10)
    out = {}
    for name in models:
        model = getattr(zoo, name)(num_classes=10)
        opt = fw.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def infer(model=model):
            with fw.no_grad():
                model(x)

        def train(model=model, opt=opt):
            loss = nn_f.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        model.eval()
        t_inf = _bench(infer, repeats)
        model.train()
        out[name] = {"infer_s": t_inf, "train_step_s": _bench(train, repeats)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--tv-python", default="/work/tvenv/bin/python")
    p.add_argument("--lib", choices=["ember", "torchvision"], help=argparse.SUPPRESS)
    a = p.parse_args()
    args = (a.models, a.batch, a.size, a.repeats, a.threads)
    if a.lib:
        print(json.dumps(run(a.lib, *args)))
        return
    results = {"ember": run("ember", *args)}
    if os.path.exists(a.tv_python):
        cmd = [
            a.tv_python,
            __file__,
            "--lib",
            "torchvision",
            "--models",
            *a.models,
            "--batch",
            str(a.batch),
            "--size",
            str(a.size),
            "--repeats",
            str(a.repeats),
            "--threads",
            str(a.threads),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results["torchvision"] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"batch {a.batch}, {a.size}x{a.size}, {a.threads} threads, median of {a.repeats}")
    for name in a.models:
        e = results["ember"][name]
        line = (
            f"{name:20s} ember infer {e['infer_s'] * 1e3:8.1f} ms  train "
            f"{e['train_step_s'] * 1e3:8.1f} ms"
        )
        if "torchvision" in results:
            t = results["torchvision"][name]
            line += (
                f" | torchvision infer {t['infer_s'] * 1e3:8.1f} ms  train "
                f"{t['train_step_s'] * 1e3:8.1f} ms | ratio infer "
                f"{e['infer_s'] / t['infer_s']:.1f}x train "
                f"{e['train_step_s'] / t['train_step_s']:.1f}x"
            )
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
