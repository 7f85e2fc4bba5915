"""``run``: measure every point of a spec through the Trainer, record it, write the report."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field

from .rundir import RunDir
from .spec import ExperimentSpec, Point, SpecError, load_spec
from .tracer import chrome_trace
from .workloads import WORKLOADS


@dataclass
class ExperimentResult:
    """What a sweep did: its directory, every row, and which points ran, were already done,
    could not run (strategy not in this build) or failed."""

    path: str
    rows: list = field(default_factory=list)
    ran: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    unavailable: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    report: str | None = None


def available_strategies() -> tuple:
    """The strategies the Trainer accepts now (sharding adds its own as they land)."""
    from ..train import config

    return tuple(config._STRATEGIES)


def default_out_dir(spec: ExperimentSpec) -> str:
    return os.path.join(os.path.expanduser("~"), "ember_results", "experiments", spec.name)


def run(
    spec,
    out_dir: str | None = None,
    *,
    address: str | None = None,
    fresh: bool = False,
    report: bool = True,
    verbose: bool = True,
    worker_env: dict | None = None,
) -> ExperimentResult:
    """Run a scale-out sweep.

    Args:
        spec: a spec file path, a dict, or an ExperimentSpec (see docs/experiments.md).
        out_dir: the run directory (default ``~/ember_results/experiments/NAME``). Points with
            a finished row there are skipped, so running again resumes an interrupted sweep.
        address: an existing Ray cluster (overrides the spec's ``where.address``); default: a
            local Ray started for the sweep and stopped after it.
        fresh: drop earlier results in ``out_dir`` first.
        report: write report.md and the plots at the end.
        verbose: a line per point on stderr.
        worker_env: environment variables for every worker (e.g. a cluster's auth settings);
            applied when this call starts or joins Ray.

    Returns:
        An :class:`ExperimentResult`.
    """
    spec = load_spec(spec)
    if spec["search"] is not None:  # a Ray Tune sweep: trials in parallel (tune_runner.py)
        from .tune_runner import tune

        return tune(
            spec,
            out_dir,
            address=address,
            fresh=fresh,
            report=report,
            verbose=verbose,
            worker_env=worker_env,
        )
    where = spec["where"]
    address = address or where["address"]
    if where["cluster"] is not None and address is None:
        raise SpecError(
            f"{spec.source}: 'where.cluster' is resolved by the command line (ember "
            "experiment SPEC); from Python pass address= (its head's HOST:PORT)"
        )
    workload = spec["workload"]
    if workload not in WORKLOADS:
        from .worker import load_user_workload

        load_user_workload(workload)  # fail now, with the import error, not inside a worker
    rd = RunDir(out_dir or default_out_dir(spec))
    rd.prepare(spec, fresh=fresh)
    done = rd.finished()
    available = available_strategies()
    result = ExperimentResult(rd.path)
    todo = []
    for p in spec.points():
        if p.id in done:
            result.skipped.append(p.id)
        elif p.strategy not in available:
            result.unavailable.append(p.id)
        else:
            todo.append(p)
    _say(
        verbose,
        f"{len(todo)} point(s) to run, {len(result.skipped)} already done, "
        f"{len(result.unavailable)} waiting for strategies not in this build "
        f"(available: {', '.join(available)}); results in {rd.path}",
    )
    started_ray = _start_ray(spec, todo, address, worker_env) if todo else False
    if todo:
        rd.add_session()
    try:
        for i, p in enumerate(todo, 1):
            row = _run_point(spec, p, address, rd)
            rd.append(row)
            (result.ran if row["status"] == "ok" else result.failed).append(p.id)
            _say(verbose, f"[{i}/{len(todo)}] {_describe(row)}")
    finally:
        if started_ray:
            from ..train._internal.ray_cluster import shutdown_if_started

            shutdown_if_started()
    rd.write_csv()
    result.rows = rd.rows()
    if report:
        from .report import write_report

        result.report = write_report(rd, spec)
        _say(verbose, f"report: {result.report}")
    return result


def _say(verbose: bool, msg: str) -> None:
    if verbose:
        print(f"(ember experiment) {msg}", file=sys.stderr, flush=True)


def _start_ray(
    spec: ExperimentSpec, todo: list[Point], address: str | None, worker_env: dict | None
) -> bool:
    """Start (or join) Ray sized for the largest point; True when this call started it."""
    from ..train._internal.ray_cluster import ensure_ray

    env = {k: str(v) for k, v in (worker_env or {}).items()}
    if spec["workload"] not in WORKLOADS:  # the workers must import the user's module too
        paths = [os.getcwd(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env["PYTHONPATH"] = os.pathsep.join(paths)
    runtime_env = {"env_vars": env} if env else None
    return ensure_ray(address, _scaling(spec, max(p.workers for p in todo)), runtime_env)


def _scaling(spec: ExperimentSpec, workers: int):
    from ..train import ScalingConfig

    where = spec["where"]
    return ScalingConfig(
        num_workers=workers,
        use_gpu=where["use_gpu"],
        resources_per_worker={"CPU": where["cpus_per_worker"]},
    )


def _worker_config(spec: ExperimentSpec, p: Point) -> dict:
    keys = (
        "workload",
        "seed",
        "steps",
        "warmup",
        "compute_steps",
        "trace_steps",
        "optimizer",
        "calibration",
    )
    return dict(
        {k: spec[k] for k in keys},
        per_worker_batch=p.per_worker_batch,
        strategy=p.strategy,
        bucket_cap_mb=p.bucket_cap_mb,
        cpus_per_worker=spec["where"]["cpus_per_worker"],
    )


def _base_row(p: Point, spec: ExperimentSpec) -> dict:
    return {
        "point_id": p.id,
        "config_id": p.config_id,
        "workers": p.workers,
        "strategy": p.strategy,
        "backend": p.backend,
        "scaling": p.scaling,
        "batch_size": p.batch_size,
        "per_worker_batch": p.per_worker_batch,
        "global_batch": p.global_batch,
        "bucket_cap_mb": p.bucket_cap_mb,
        "rep": p.rep,
        "steps": spec["steps"],
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        # the machine's 1-minute load when the point started (others' work adds noise)
        "load_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }


def _run_point(spec: ExperimentSpec, p: Point, address: str | None, rd: RunDir) -> dict:
    from ..train import RunConfig, Trainer
    from .worker import train_point

    row = _base_row(p, spec)
    storage = tempfile.mkdtemp(prefix="ember_experiment_")
    t0 = time.perf_counter()
    try:
        result = Trainer(
            train_point,
            _worker_config(spec, p),
            scaling_config=_scaling(spec, p.workers),
            run_config=RunConfig(
                name=p.id, storage_path=storage, verbose=0, log_to_tensorboard=False
            ),
            strategy=p.strategy,
            backend=p.backend,
            ray_address=address,
        ).fit()
        ranks = result.metrics["ranks"]
    except Exception as e:  # one failing point must not lose the rest of the sweep
        detail = str(e).strip().splitlines()
        row.update(
            status="failed",
            error=" | ".join(detail[-3:])[-500:],
            wall_s=round(time.perf_counter() - t0, 2),
        )
        return row
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    row.update(summarize(p, ranks, spec["steps"]))
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    if spec["trace_steps"]:
        os.makedirs(rd.file("timeline"), exist_ok=True)
        rel = os.path.join("timeline", f"{p.id}.json")
        per_rank = [{"rank": r["rank"], "host": r["host"], "spans": r["timeline"]} for r in ranks]
        with open(rd.file(rel), "w") as f:
            json.dump(chrome_trace(per_rank, title=p.id), f)
        row["timeline"] = rel
    return row


def summarize(p: Point, ranks: list[dict], steps: int) -> dict:
    """The point's figures from every rank's measurements (rounded as the CSV shows them).

    Throughput is the global batch over the slowest rank's median step (medians, because a
    shared machine's stray stalls should not decide a comparison; the mean over the whole timed
    loop is kept as ``wall_samples_per_s``). Step, compute and data times are each rank's
    median over steps, averaged over ranks; exposed communication is the step time less the
    compute reference and data loading.
    """
    n = p.workers
    mean = statistics.fmean
    step = mean(r["step_s"] for r in ranks)
    compute = mean(r["compute_s"] for r in ranks)
    data = mean(r["data_s"] for r in ranks)
    wall = max(r["wall_s"] for r in ranks)
    sent = [r["sent_bytes_per_step"] for r in ranks]
    # allreduce timings: every size, the slowest rank's median
    by_size: dict[int, float] = {}
    for r in ranks:
        for nbytes, secs in r["allreduce"]:
            by_size[nbytes] = max(by_size.get(nbytes, 0.0), secs)
    grad_bytes = ranks[0]["grad_bytes"]
    # the sample at the gradient size (it is always measured; nearest if dtypes differ)
    grad_sample = min(by_size, key=lambda s: abs(s - grad_bytes)) if by_size else None
    t_grad = by_size.get(grad_sample) if grad_sample else None
    mib = 1 << 20
    out = {
        "status": "ok",
        "samples_per_s": round(p.global_batch / max(r["step_s"] for r in ranks), 2),
        "wall_samples_per_s": round(p.global_batch * steps / wall, 2),
        "step_ms": round(step * 1e3, 3),
        "compute_ms": round(compute * 1e3, 3),
        "comm_exposed_ms": round(max(0.0, step - compute - data) * 1e3, 3),
        "data_ms": round(data * 1e3, 3),
        "comm_wait_ms": round(mean(r["comm_wait_s"] for r in ranks) * 1e3, 3),
        "sent_mib_per_step": (
            round(mean(sent) / mib, 4) if all(s is not None for s in sent) else None
        ),
        "grad_mib": round(grad_bytes / mib, 4),
        "grad_bytes": grad_bytes,
        "n_params": ranks[0]["n_params"],
        "allreduce_grad_ms": round(t_grad * 1e3, 3) if t_grad else None,
        "busbw_gbps": (round(grad_sample / t_grad * 2 * (n - 1) / n / 1e9, 4) if t_grad else None),
        "mem_mib": round(max(r["memory_bytes"] for r in ranks) / mib, 4),
        "mem_source": ranks[0]["memory_source"],
        "rss_peak_mib": round(max(r["rss_peak_bytes"] for r in ranks) / mib, 2),
        # the memory report's categories on the rank holding the most
        "memory_mib": _categories(max(ranks, key=lambda r: r["memory_bytes"])),
        "loss": round(mean(r["loss"] for r in ranks), 5),
        "hosts": sorted({r["host"] for r in ranks}),
        "allreduce": sorted([s, t] for s, t in by_size.items()),
        "ranks": [
            {
                "rank": r["rank"],
                "host": r["host"],
                "step_ms": round(r["step_s"] * 1e3, 3),
                "compute_ms": round(r["compute_s"] * 1e3, 3),
                "data_ms": round(r["data_s"] * 1e3, 3),
                "comm_wait_ms": round(r["comm_wait_s"] * 1e3, 3),
                "mem_mib": round(r["memory_bytes"] / mib, 4),
                "rss_peak_mib": round(r["rss_peak_bytes"] / mib, 2),
                "memory_mib": _categories(r),
                "loss": round(r["loss"], 5),
            }
            for r in ranks
        ],
    }
    return out


def _categories(rank: dict) -> dict | None:
    mem = rank.get("memory")
    return {k: round(v / (1 << 20), 3) for k, v in mem.items()} if mem else None


def _describe(row: dict) -> str:
    if row["status"] == "stopped":
        return f"{row['point_id']}: stopped early (loss {row.get('loss')})"
    if row["status"] != "ok":
        return f"{row['point_id']}: FAILED ({row.get('error', '')[:200]})"
    return (
        f"{row['point_id']}: {row['samples_per_s']:.1f} samples/s, step "
        f"{row['step_ms']:.1f} ms (compute {row['compute_ms']:.1f}, exposed comm "
        f"{row['comm_exposed_ms']:.1f}, data {row['data_ms']:.1f}) [{row['wall_s']:.1f} s]"
    )
