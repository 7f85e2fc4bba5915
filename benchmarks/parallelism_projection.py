"""benchmarks/parallelism.py --project: the α-β projection of each measured cell
(``ember.distributed.experiment.parallel_cost``) from a calibration taken in the same run."""

from __future__ import annotations

from parallelism import SIZES, build_gpt

PROJECTION_COLUMNS = [
    "size",
    "strategy",
    "best step ms",
    "predicted ms",
    "pred/meas",
    "compute ms",
    "comm ms",
    "bubble ms",
]
CALIB_BYTES = (128 << 10, 512 << 10, 2 << 20)  # --project's allreduces: all ring-sized


def calibrate(sizes: list, reps: int = 5) -> dict:
    """This rank's inputs to the α-β projection: allreduce timings at ``CALIB_BYTES`` (ring
    sizes), and per model size the whole model's forward + backward on the global batch and
    Adam's step over all its parameters, run by every rank at once (so under the same core
    contention as the parallel runs). Best of ``reps``: on a shared machine the minimum is
    the figure least inflated by other load (the projection compares it with the best step)."""
    import time

    import numpy as np

    import ember
    import ember.distributed as dist
    from ember import nn

    n, out = dist.get_world_size(), {"allreduce": [], "compute": {}, "optim": {}}
    for nbytes in CALIB_BYTES:
        buf = ember.zeros(nbytes // 4)
        dist.all_reduce(buf)  # warm-up: buffers, connections
        ts = []
        for _ in range(reps):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            ts.append(time.perf_counter() - t0)
        out["allreduce"].append([n, nbytes, min(ts)])
    for size in sizes:
        cfg = SIZES[size]
        rng = np.random.default_rng(0)
        x = ember.tensor(rng.integers(0, cfg["vocab"], (cfg["batch"], cfg["seq"])))
        y = ember.tensor(rng.integers(0, cfg["vocab"], (cfg["batch"], cfg["seq"])))
        model = build_gpt(cfg)
        opt = ember.optim.Adam(model.parameters(), lr=1e-3)
        comp, step = [], []
        for i in range(reps + 1):  # the first is a warm-up
            dist.barrier()
            opt.zero_grad()
            t0 = time.perf_counter()
            logits = model(x)
            nn.functional.cross_entropy(logits.reshape(-1, cfg["vocab"]), y.reshape(-1)).backward()
            t1 = time.perf_counter()
            opt.step()
            t2 = time.perf_counter()
            if i:
                comp.append(t1 - t0)
                step.append(t2 - t1)
        out["compute"][size] = min(comp)
        out["optim"][size] = min(step)
    return out


def project(args, per_rank: list[list[dict]]) -> tuple[list[list], dict]:
    """The α-β projection of every measured cell (ember.distributed.experiment.parallel_cost)
    from this run's calibration: α and β fitted to the allreduce timings (slowest rank per
    size), compute and optimizer time from the 1-rank reference (slowest rank); compared with
    the slowest rank's best timed step (all best-of-N figures, see ``calibrate``)."""
    from ember.distributed.experiment.costmodel import fit_alpha_beta
    from ember.distributed.experiment.parallel_cost import GPTShape, step_parts

    cal = args.calibration
    samples = [
        [n, s, max(c["allreduce"][i][2] for c in cal)]
        for i, (n, s, _) in enumerate(cal[0]["allreduce"])
    ]
    ic = fit_alpha_beta(samples, f"this machine ({args.backend})")
    rows = []
    for cells in zip(*per_rank):
        size, strategy = cells[0]["size"], cells[0]["strategy"]
        cfg = SIZES[size]
        shape = GPTShape(
            cfg["vocab"], cfg["d"], cfg["heads"], cfg["layers"], cfg["seq"], cfg["batch"]
        )
        comp = max(c["compute"][size] for c in cal)
        opt = max(c["optim"][size] for c in cal)
        tp = args.world // 2 if strategy == "tpdp" else None
        parts = step_parts(
            strategy, shape, args.world, ic, comp, opt, tp=tp, microbatches=args.microbatches
        )
        meas = 1e3 * max(c["step_min"] for c in cells)  # the slowest rank's best step
        pred = 1e3 * parts["step"]
        rows.append(
            [
                size,
                strategy,
                f"{meas:.1f}",
                f"{pred:.1f}",
                f"{pred / meas:.2f}",
                f"{1e3 * (parts['compute'] + parts['optim']):.1f}",
                f"{1e3 * parts['comm']:.1f}",
                f"{1e3 * parts['bubble']:.1f}",
            ]
        )
    info = {
        "alpha_us": ic.alpha * 1e6,
        "bandwidth_gbps": ic.bandwidth_gbps,
        "allreduce": samples,
        "compute_ms": {s: 1e3 * max(c["compute"][s] for c in cal) for s in args.size},
        "optim_ms": {s: 1e3 * max(c["optim"][s] for c in cal) for s in args.size},
    }
    return rows, info
