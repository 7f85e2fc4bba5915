"""DataLoader throughput: ember vs PyTorch on the same CPU-heavy per-sample transform.

Both loaders read the same in-memory uint8 images and run the same NumPy transform per sample
(crop, flip, 3x3 blur, gamma, normalise, HWC -> CHW float32), so the difference is the loader:
batching, collation, worker processes and moving batches back to the main process. Workers are
persistent and one warm-up epoch runs first, so the figures are steady-state samples/s. ember
and torch runs alternate and the best of ``--reps`` is kept to damp noise from other load; the
CPU time per sample (main process plus workers) is printed too, as it is robust to that noise.

    python benchmarks/dataloader.py [--samples 2048] [--batch-size 64] [--size 64] [--reps 3]

``--ray-data`` compares instead the two ways of feeding 2 Trainer workers (issue #26): Ray Data
(``ds.map_batches(transform)`` streaming on the cluster's CPUs, read through
``get_dataset_shard(...).iter_ember_batches``) against ember's DataLoader with ``--workers``
worker processes inside each Trainer worker, the same transform (``--costs`` rounds of FFT
filtering and a 3x3 convolution per 32x32 image) and the same small model step, in one run:

    python benchmarks/dataloader.py --ray-data [--costs 0 1 4] [--workers 1] [--samples 1024]
        [--block-batches 1] [--stats]

Its table adds the CPU time of every process (Ray's and the DataLoader's workers included) per
sample over each feed's span, robust to other load; ``--stats`` prints Ray Data's own per-stage
times; ``--block-batches`` sets how many batches one Ray Data block (one map task) holds.
"""

from __future__ import annotations

import os

# Pin every BLAS / OpenMP pool to one thread before NumPy or torch is imported.
for _var in (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import functools  # noqa: E402
import gc  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from _common import nonneg_int, positive_int  # noqa: E402
from _dataloader_ray_data import (  # noqa: E402, F401  (re-exported: the old names stay here)
    CostlyImages,
    _blocks,
    _fit,
    _ray_loop,
    _step_ms,
    _timed_epochs,
    _TreeCPU,
    costly_transform,
    make_images,
    run_ray_data,
    transform_batch,
)

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def heavy_transform(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A CPU-heavy augmentation in plain NumPy (the same code for both frameworks)."""
    h, w, _ = img.shape
    pad = np.pad(img, ((4, 4), (4, 4), (0, 0)), mode="reflect")
    i, j = rng.integers(0, 9, size=2)
    x = pad[i : i + h, j : j + w].astype(np.float32) / 255.0
    if rng.random() < 0.5:
        x = x[:, ::-1]
    p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
    blur = sum(p[di : di + h, dj : dj + w] for di in range(3) for dj in range(3)) / 9.0
    x = np.power(0.5 * x + 0.5 * blur, 1.1)
    x = (x - MEAN) / STD
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class EmberImages:
    """Map-style dataset for ember (defined without a framework base class: duck typing)."""

    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return heavy_transform(self.images[i], np.random.default_rng(i)), i % 10


TorchImages = EmberImages  # the same class serves torch: both accept any __getitem__/__len__


def throughput(loader, epochs: int) -> float:
    for _ in loader:  # warm-up epoch: starts the workers, fills caches
        pass
    start = time.perf_counter()
    n = 0
    for _ in range(epochs):
        for x, _y in loader:
            # Read the batch, as training would (mapping shared memory lazily is not free).
            np.asarray(x).sum()
            n += x.shape[0]
    return n / (time.perf_counter() - start)


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (workers, once joined)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def measure(make_loader, epochs: int, samples: int) -> tuple[float, float]:
    """(samples/s in the timed epochs, CPU ms per sample over all epochs, workers included)."""
    cpu0 = cpu_seconds()
    loader = make_loader()
    rate = throughput(loader, epochs)
    del loader
    gc.collect()  # shuts the workers down and reaps them, so their CPU time is counted
    return rate, (cpu_seconds() - cpu0) * 1e3 / (samples * (epochs + 1))


def main(argv: list[str] | None = None) -> list[dict] | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--samples",
        type=positive_int,
        default=None,
        help="images (default 2048; 1024 with --ray-data)",
    )
    parser.add_argument("--batch-size", type=positive_int, default=64)
    parser.add_argument(
        "--size",
        type=positive_int,
        default=None,
        help="image side in pixels (default 64; 32 with --ray-data)",
    )
    parser.add_argument("--epochs", type=positive_int, default=1, help="timed epochs per run")
    parser.add_argument(
        "--reps",
        type=positive_int,
        default=3,
        help="best of this many runs (not with --ray-data: one run)",
    )
    parser.add_argument(
        "--workers",
        type=nonneg_int,
        nargs="+",
        default=None,
        help="DataLoader num_workers values to compare (default 0 1 2; with "
        "--ray-data: 1, per Trainer worker)",
    )
    parser.add_argument(
        "--ray-data", action="store_true", help="Ray Data vs DataLoader feeding 2 Trainer workers"
    )
    parser.add_argument(
        "--costs",
        type=nonneg_int,
        nargs="+",
        default=[0, 1, 4],
        help="--ray-data: transform costs (FFT + conv rounds per sample)",
    )
    parser.add_argument(
        "--trainer-workers", type=positive_int, default=2, help="--ray-data: Trainer workers"
    )
    parser.add_argument(
        "--ray-cpus",
        type=positive_int,
        default=None,
        help="--ray-data: logical CPUs of the local Ray started here (default: "
        "cores + Trainer workers, so Ray Data has the cores' worth to schedule)",
    )
    parser.add_argument(
        "--block-batches",
        type=positive_int,
        default=1,
        help="--ray-data: batches per Ray Data block (one map task and one split call per block)",
    )
    parser.add_argument(
        "--stats", action="store_true", help="--ray-data: print Ray Data's per-stage stats"
    )
    args = parser.parse_args(argv)
    if args.ray_data:
        args.samples = args.samples or 1024
        args.size = args.size or 32
        args.workers = args.workers or [1]
        if args.samples < args.trainer_workers * args.batch_size:
            parser.error(
                f"--samples {args.samples} gives a Trainer worker less than one batch "
                f"of {args.batch_size} (need >= {args.trainer_workers * args.batch_size})"
            )
        return run_ray_data(args)
    args.samples = args.samples or 2048
    args.size = args.size or 64
    args.workers = args.workers if args.workers is not None else [0, 1, 2]

    import torch
    import torch.utils.data as tdata

    import ember.utils.data as edata

    torch.set_num_threads(1)
    images = make_images(args.samples, args.size)
    batch_mb = args.batch_size * 3 * args.size * args.size * 4 / 2**20
    print(
        f"{args.samples} samples of {args.size}x{args.size}x3, batch {args.batch_size} "
        f"({batch_mb:.1f} MiB float32), best of {args.reps}"
    )
    print(
        f"{'workers':>7} | {'ember samples/s':>15} | {'torch samples/s':>15} | "
        f"{'ember/torch':>11} | {'CPU ms/sample ember / torch':>27}"
    )
    print("-" * 89)
    for workers in args.workers:
        extra = dict(persistent_workers=True) if workers > 0 else {}
        rate = {"ember": 0.0, "torch": 0.0}
        cpu = {"ember": float("inf"), "torch": float("inf")}
        for _ in range(args.reps):
            for name, module, dataset in (
                ("ember", edata, EmberImages),
                ("torch", tdata, TorchImages),
            ):
                make = functools.partial(
                    module.DataLoader,
                    dataset(images),
                    batch_size=args.batch_size,
                    shuffle=True,
                    num_workers=workers,
                    **extra,
                )
                r, c = measure(make, args.epochs, args.samples)
                rate[name], cpu[name] = max(rate[name], r), min(cpu[name], c)
        ratio = rate["ember"] / rate["torch"]
        cpu_cols = f"{cpu['ember']:.3f} / {cpu['torch']:.3f}"
        print(
            f"{workers:>7} | {rate['ember']:>15.0f} | {rate['torch']:>15.0f} | "
            f"{ratio:>10.2f}x | {cpu_cols:>27}"
        )


if __name__ == "__main__":
    main()
