"""benchmarks/dataloader.py --ray-data: Ray Data vs ember's DataLoader feeding Trainer workers.

``run_ray_data`` runs one Trainer over every feed (``_ray_loop`` in each worker), samples the
CPU time of the whole process tree (``_TreeCPU``) and prints one row per (transform cost,
feed); the command line and the table are described in dataloader.py's docstring.
"""

from __future__ import annotations

import functools
import json
import os
import time

import numpy as np
from _common import best_of, table


def make_images(n: int, size: int) -> np.ndarray:
    """``n`` random ``size`` x ``size`` x 3 uint8 images (seed 0): both modes' input."""
    return np.random.default_rng(0).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def costly_transform(img: np.ndarray, cost: int) -> np.ndarray:
    """``cost`` rounds of FFT low-pass filtering and a 3x3 convolution on one HWC uint8 image,
    then HWC -> CHW float32: a tunable amount of NumPy work per sample (cost 0: the cast)."""
    x = img.astype(np.float32) / 255.0
    h, w, _ = x.shape
    fy = np.fft.fftfreq(h)[:, None, None]
    fx = np.fft.rfftfreq(w)[None, :, None]
    low = np.exp(-(fy**2 + fx**2) * 40.0).astype(np.float32)
    for _ in range(cost):
        x = np.fft.irfft2(np.fft.rfft2(x, axes=(0, 1)) * low, s=(h, w), axes=(0, 1))
        p = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="edge")
        x = sum(
            p[di : di + h, dj : dj + w] * (0.5 if di == dj == 1 else 1 / 16)
            for di in range(3)
            for dj in range(3)
        )
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def transform_batch(batch: dict, cost: int) -> dict:
    """The Ray Data side: the same per-sample transform over a batch of rows."""
    return {"x": np.stack([costly_transform(img, cost) for img in batch["image"]]), "y": batch["y"]}


class CostlyImages:
    """The DataLoader side: a map-style dataset running the same per-sample transform."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, cost: int):
        self.images, self.labels, self.cost = images, labels, cost

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return costly_transform(self.images[i], self.cost), int(self.labels[i])


def _timed_epochs(batches, step, epochs: int) -> tuple[int, float, float]:
    """One warm-up epoch, then ``epochs`` timed ones: (samples, wall start, wall end)."""
    for x, y in batches():
        step(x, y)
    start, n = time.time(), 0
    for _ in range(epochs):
        for x, y in batches():
            step(x, y)
            n += x.shape[0]
    return n, start, time.time()


def _ray_loop(config: dict) -> None:
    """Runs in every Trainer worker: each feed in turn, a barrier between them."""
    import ember
    import ember.distributed as dist
    from ember.distributed import train

    ctx = train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    ember.manual_seed(0)
    model = ember.nn.Linear(3 * config["size"] ** 2, 10)
    opt = ember.optim.SGD(model.parameters(), lr=0.01)

    def step(x, y):  # the fixed small model step (local: the feed is what is compared)
        loss = ember.nn.functional.cross_entropy(model(x.reshape(x.shape[0], -1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    images, labels, bs = config["images"], config["labels"], config["batch_size"]
    mine = slice(rank, None, world)  # the DataLoader reads this rank's half, as a split would
    times = []
    for cost in config["costs"]:
        for nw in config["workers"]:
            loader = ember.utils.data.DataLoader(
                CostlyImages(images[mine], labels[mine], cost),
                batch_size=bs,
                num_workers=nw,
                persistent_workers=nw > 0,
            )
            dist.barrier()
            times.append(
                [
                    cost,
                    f"DataLoader({nw})",
                    *_timed_epochs(functools.partial(iter, loader), step, config["epochs"]),
                ]
            )
            del loader  # stops its workers before the next feed starts
        shard = train.get_dataset_shard(f"cost{cost}")

        def ray_batches(shard=shard):
            for b in shard.iter_ember_batches(batch_size=bs, dtypes={"x": ember.float32}):
                yield b["x"], b["y"]

        dist.barrier()
        times.append([cost, "Ray Data", *_timed_epochs(ray_batches, step, config["epochs"])])
        if rank == 0 and config["stats"]:  # Ray Data's per-stage times of the last epoch
            with open(os.path.join(config["out"], f"stats{cost}.txt"), "w") as f:
                f.write(shard.stats())
    with open(os.path.join(config["out"], f"rank{rank}.json"), "w") as f:
        json.dump(times, f)
    train.report({"rank": rank})


def _step_ms(size: int, batch: int) -> float:
    """Driver-side time of one model step on one batch (the same step as in the workers)."""
    import ember

    model = ember.nn.Linear(3 * size * size, 10)
    opt = ember.optim.SGD(model.parameters(), lr=0.01)
    x, y = ember.randn(batch, 3 * size * size), ember.randint(0, 10, (batch,))

    def step():
        loss = ember.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return best_of(step, repeat=3, min_time=0.05) * 1e3


def _fit(args, images: np.ndarray, labels: np.ndarray) -> list[list]:
    """One Trainer run over every feed; returns each rank's [cost, feed, samples, start, end]."""
    import tempfile

    from ember.distributed.train import DataConfig, RunConfig, ScalingConfig, Trainer

    # Ray Data reads the rows from the object store and transforms them on the cluster's CPUs,
    # again every epoch, as the DataLoader does in its worker processes. A block holds
    # --block-batches whole batches: one map task and one split-coordinator call per block (the
    # per-block costs), and the workers' batches are slices of it, without re-batching copies.
    # (``from_items`` would make 5-row blocks: 13 of them per batch.)
    rows = args.batch_size * args.block_batches
    base = _blocks(images, labels, rows)
    datasets = {
        f"cost{c}": base.map_batches(
            functools.partial(transform_batch, cost=c),
            batch_size=rows,
            batch_format="numpy",
            zero_copy_batch=True,  # the transform only reads its input
        )
        for c in args.costs
    }
    with tempfile.TemporaryDirectory() as tmp:
        config = dict(
            images=images,
            labels=labels,
            size=args.size,
            batch_size=args.batch_size,
            costs=args.costs,
            workers=args.workers,
            epochs=args.epochs,
            out=tmp,
            stats=args.stats,
        )
        cpu = _TreeCPU()
        Trainer(
            _ray_loop,
            config,
            scaling_config=ScalingConfig(num_workers=args.trainer_workers),
            run_config=RunConfig(storage_path=tmp, name="bench", verbose=0),
            datasets=datasets,
            dataset_config=DataConfig(),
        ).fit()
        cpu.stop()
        per_rank = [
            json.load(open(os.path.join(tmp, f"rank{r}.json"))) for r in range(args.trainer_workers)
        ]
        stats = {
            c: open(os.path.join(tmp, f"stats{c}.txt")).read() for c in args.costs if args.stats
        }
    return per_rank, cpu, stats


def _blocks(images: np.ndarray, labels: np.ndarray, rows: int):
    """A Ray Dataset of ``{"image", "y"}`` in the object store, in blocks of ``rows`` rows."""
    import pyarrow as pa
    import ray.data
    from ray.data.extensions import ArrowTensorArray

    return ray.data.from_arrow(
        [
            pa.table(
                {
                    "image": ArrowTensorArray.from_numpy(images[i : i + rows]),
                    "y": labels[i : i + rows],
                }
            )
            for i in range(0, len(images), rows)
        ]
    )


class _TreeCPU:
    """CPU seconds of this process and all its descendants (the local Ray: raylet, Trainer
    workers, Ray Data's tasks and actors, DataLoader workers), sampled every 0.1 s, so that a
    feed's CPU cost can be read over its wall-clock span; robust to other load on the machine."""

    def __init__(self, interval: float = 0.1):
        import threading

        import psutil

        self._me, self._seen, self.samples = psutil.Process(), {}, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _total(self) -> float:
        for p in [self._me, *self._me.children(recursive=True)]:
            try:
                t = p.cpu_times()
                # (exited processes keep their last reading: their CPU time was spent)
                self._seen[p.pid] = t.user + t.system
            except Exception:
                pass
        return sum(self._seen.values())

    def _run(self, interval: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._total()))
            self._stop.wait(interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), self._total()))

    def between(self, start: float, end: float) -> float:
        t, c = zip(*self.samples)
        return float(np.interp(end, t, c) - np.interp(start, t, c))


def run_ray_data(args) -> list[dict]:
    """Print and return one row per (transform cost, feed): samples/s into all workers."""
    import sys

    import ray
    from ray import cloudpickle  # Ray's own copy: the one that pickles tasks and actors

    # ship this module's code (the Trainer loop, the dataset, the batch transform) to Ray by
    # value: Ray's workers do not have benchmarks/ on their path
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    started = not ray.is_initialized()
    # Ray gives its raylet a fixed 30 s to register; on a loaded machine a start can miss it,
    # so a failed start is cleaned up and tried again.
    for attempt in range(3 if started else 0):
        try:
            ray.init(
                num_cpus=args.ray_cpus or (os.cpu_count() or 1) + args.trainer_workers,
                include_dashboard=False,
                logging_level="warning",
                log_to_driver=False,
            )
            break
        except Exception:
            ray.shutdown()
            if attempt == 2:
                raise
    images = make_images(args.samples, args.size)
    labels = np.arange(args.samples, dtype=np.int64) % 10
    try:
        per_rank, cpu, stats = _fit(args, images, labels)
    finally:
        if started:
            ray.shutdown()
    step_ms = _step_ms(args.size, args.batch_size)
    tf_ms = {
        c: best_of(functools.partial(costly_transform, images[0], c), repeat=3, min_time=0.05) * 1e3
        for c in args.costs
    }
    rows, out = [], []
    for i, (cost, feed, *_) in enumerate(per_rank[0]):
        spans = [r[i] for r in per_rank]
        # samples into all workers over the span from the first start to the last end
        n, start, end = sum(s[2] for s in spans), min(s[3] for s in spans), max(s[4] for s in spans)
        rows.append(
            dict(
                cost=cost,
                feed=feed,
                transform_ms=tf_ms[cost],
                samples_per_s=n / (end - start),
                # all the processes' CPU time per sample over the span (load-robust)
                cpu_ms=cpu.between(start, end) * 1e3 / n,
            )
        )
    for r in rows:
        r["vs_dataloader"] = r["samples_per_s"] / max(
            q["samples_per_s"] for q in rows if q["cost"] == r["cost"] and q["feed"] != "Ray Data"
        )
    print(
        f"{args.samples} samples of {args.size}x{args.size}x3 into {args.trainer_workers} "
        f"Trainer workers, batch {args.batch_size}, {args.epochs} timed epoch(s) after one "
        f"warm-up; model step {step_ms:.2f} ms/batch = "
        f"{step_ms / args.batch_size:.3f} ms/sample; {os.cpu_count()} cores"
    )
    for r in rows:
        out.append(
            [
                r["cost"],
                f"{r['transform_ms']:.3f}",
                r["feed"],
                f"{r['samples_per_s']:.0f}",
                f"{r['vs_dataloader']:.2f}x",
                f"{r['cpu_ms']:.3f}",
            ]
        )
    print(
        table(
            out,
            [
                "cost",
                "transform ms/sample",
                "feed",
                "samples/s",
                "vs best DataLoader",
                "CPU ms/sample",
            ],
        )
    )
    for c, text in stats.items():
        print(f"\nRay Data's stats, cost {c}, last epoch (rank 0's iterator):\n{text}")
    return rows
