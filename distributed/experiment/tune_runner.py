"""``tune``: a sweep's trials on Ray Tune, in parallel where the cluster has room.

Each trial is one Trainer run (the same measurement as the sequential runner's points) whose
worker group lives inside the trial's placement group: ``tune.with_resources`` reserves an
empty head bundle for the trial's driver and one bundle per worker, and the WorkerGroup places
its actors in those bundles. Trials report every ``search.report_every`` timed steps, so that
ASHA and the median stopping rule can stop poor trials early. The rows go to the same run
directory (results.jsonl/csv, report.md, plots) as ``run``'s; Tune's own state lives in
``RUN_DIR/tune`` and ``tune(..., resume=True)`` continues it through ``Tuner.restore``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
import time

from .rundir import RunDir
from .runner import (
    ExperimentResult,
    _base_row,
    _describe,
    _say,
    _scaling,
    _start_ray,
    _worker_config,
    available_strategies,
    default_out_dir,
    summarize,
)
from .spec import ExperimentSpec, Point, SpecError, load_spec
from .tune_spec import GRID_PARAMS, make_scheduler, make_search_alg, to_tune_space
from .workloads import WORKLOADS

TUNE_DIR = "tune"


def param_space(spec: ExperimentSpec) -> dict:
    """Tune's ``param_space``: the ``search.space`` entries, and a grid search over every grid
    axis (and the repetitions) the space does not name."""
    from ray import tune

    space = spec["search"]["space"]
    out = {}
    for axis in GRID_PARAMS:
        if axis in space:
            out[axis] = to_tune_space(space[axis])
        else:
            values = spec["grid"][axis]
            out[axis] = values[0] if len(values) == 1 else tune.grid_search(list(values))
    for k in ("lr", "momentum", "optimizer"):
        if k in space:
            out[k] = to_tune_space(space[k])
    reps = spec["repetitions"]
    out["rep"] = 0 if reps == 1 else tune.grid_search(list(range(reps)))
    return out


def _trial_point(config: dict) -> Point:
    return Point(
        int(config["workers"]),
        str(config["strategy"]),
        str(config["backend"]),
        int(config["batch_size"]),
        str(config["scaling"]),
        float(config["bucket_cap_mb"]),
        int(config.get("rep", 0)),
    )


def _trial_resources(cpus: float, use_gpu: bool):
    from ray.tune import PlacementGroupFactory

    bundle = {"CPU": cpus, **({"GPU": 1} if use_gpu else {})}

    def resources(config: dict):
        # the trial's own process needs nothing: its workers hold the CPUs
        return PlacementGroupFactory([{}] + [dict(bundle)] * int(config["workers"]))

    return resources


def _trial_ids(spec: ExperimentSpec, config: dict, p: Point) -> tuple[str, str]:
    """(config_id, point_id) of a trial: the point's, with the searched optimizer settings."""
    extra = "".join(
        f"-{k}{config[k]:.3g}" if isinstance(config[k], float) else f"-{k}{config[k]}"
        for k in ("optimizer", "lr", "momentum")
        if k in spec["search"]["space"]
    )
    return p.config_id + extra, f"{p.config_id}{extra}-r{p.rep}"


def run_trial(config: dict, spec_data: dict) -> None:
    """Tune's trainable: one Trainer run, its progress relayed to Tune as it comes."""
    from ray import tune

    from ..train import RunConfig, Trainer
    from .worker import train_point

    spec = ExperimentSpec(spec_data)
    p = _trial_point(config)
    wc = _worker_config(spec, p)
    wc["optimizer"] = dict(wc["optimizer"])
    for k in ("lr", "momentum"):
        if k in config:
            wc["optimizer"][k] = float(config[k])
    if "optimizer" in config:
        wc["optimizer"]["name"] = config["optimizer"]
    wc["report_every"] = spec["search"]["report_every"]
    if p.scaling == "strong" and p.batch_size % p.workers:
        raise SpecError(f"batch_size {p.batch_size} does not split over {p.workers} workers")
    config_id, point_id = _trial_ids(spec, config, p)
    row = dict(_base_row(p, spec), point_id=point_id, config_id=config_id, lr=wc["optimizer"]["lr"])
    storage = tempfile.mkdtemp(prefix="ember_tune_trial_")
    out: dict = {}

    def fit():
        try:
            trainer = Trainer(
                train_point,
                wc,
                scaling_config=_scaling(spec, p.workers),
                run_config=RunConfig(
                    name="run", storage_path=storage, verbose=0, log_to_tensorboard=False
                ),
                strategy=p.strategy,
                backend=p.backend,
            )
            # Tune reuses this trial actor (reuse_actors) and its placement group for the next
            # trial: keep the worker processes too, so that trial skips their start and imports
            # (EMBER_TUNE_REUSE_WORKERS=0: fresh worker processes for every trial)
            trainer._reuse_workers = os.environ.get("EMBER_TUNE_REUSE_WORKERS", "1") != "0"
            out["result"] = trainer.fit()
        except BaseException as e:  # noqa: BLE001 - re-raised in the trial's thread
            out["error"] = e

    t0 = time.perf_counter()
    thread = threading.Thread(target=fit, name="ember-tune-trial", daemon=True)
    thread.start()
    try:
        seen = 0
        metrics_file = os.path.join(storage, "run", "metrics.jsonl")
        while True:
            alive = thread.is_alive()
            for m in _new_rows(metrics_file, seen):
                seen += 1
                if "ranks" not in m:  # an intermediate report: the scheduler's clock
                    tune.report(
                        {
                            "loss": m["loss"],
                            "step": m["step"],
                            "step_ms": m["step_ms"],
                            "samples_per_s": p.global_batch / (m["step_ms"] / 1e3),
                        }
                    )
            if not alive:
                break
            thread.join(0.2)
        if "error" in out:
            raise out["error"]
        ranks = out["result"].metrics["ranks"]
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    row.update(summarize(p, ranks, spec["steps"]))
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    tune.report(
        {
            "loss": row["loss"],
            "step": spec["steps"],
            "step_ms": row["step_ms"],
            "samples_per_s": row["samples_per_s"],
            "ember_row": json.dumps(row),
        }
    )


def _new_rows(path: str, skip: int) -> list[dict]:
    """The complete JSON lines of ``path`` after the first ``skip`` (a torn last line waits)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = f.read().split("\n")
    return [json.loads(line) for line in lines[skip:-1] if line.strip()]


def tune(
    spec,
    out_dir: str | None = None,
    *,
    address: str | None = None,
    fresh: bool = False,
    resume: bool = True,
    report: bool = True,
    verbose: bool = True,
    worker_env: dict | None = None,
) -> ExperimentResult:
    """Run a sweep's trials on Ray Tune (``spec`` needs a ``search:`` section).

    Args:
        spec: a spec file path, a dict, or an ExperimentSpec (see docs/experiments.md).
        out_dir: the run directory (default ``~/ember_results/experiments/NAME``).
        address: an existing Ray cluster; default: a local Ray started for the sweep.
        fresh: drop earlier results (and Tune's state) in ``out_dir`` first.
        resume: continue an interrupted Tune experiment found in ``out_dir``
            (``Tuner.restore``: finished trials are kept, unfinished and errored ones rerun).
        report, verbose, worker_env: as for :func:`run`.

    Returns:
        An :class:`ExperimentResult`; ``ran`` lists finished trials, ``failed`` errored ones,
        ``skipped`` those the scheduler stopped early.
    """
    spec = load_spec(spec)
    if spec["search"] is None:
        raise SpecError(
            f"{spec.source}: tune() needs a 'search:' section (see "
            "docs/experiments.md); run() measures the grid one point at a time"
        )
    from ray import tune as rtune

    address = address or spec["where"]["address"]
    if spec["where"]["cluster"] is not None and address is None:
        raise SpecError(
            f"{spec.source}: 'where.cluster' is resolved by the command line; from "
            "Python pass address="
        )
    if spec["workload"] not in WORKLOADS:
        from .worker import load_user_workload

        load_user_workload(spec["workload"])
    bad = sorted(set(_axis_values(spec, "strategy")) - set(available_strategies()))
    if bad:
        raise SpecError(
            f"{spec.source}: strategies {bad} are not in this build "
            f"(available: {', '.join(available_strategies())})"
        )
    search_alg = make_search_alg(spec["search"], spec["seed"])  # optuna missing: say so now
    rd = RunDir(out_dir or default_out_dir(spec))
    tune_path = rd.file(TUNE_DIR)
    if resume and not fresh:
        _check_same_search(spec, rd, tune_path)
    rd.prepare(spec, fresh=fresh)
    if fresh:
        shutil.rmtree(tune_path, ignore_errors=True)
    workers = max(int(w) for w in _axis_values(spec, "workers"))
    points = [Point(workers, "ddp", "auto", 1, "weak", 1.0, 0)]
    started_ray = _start_ray(spec, points, address, worker_env)
    rd.add_session()
    search, where = spec["search"], spec["where"]
    trainable = rtune.with_resources(
        rtune.with_parameters(run_trial, spec_data=spec.data),
        _trial_resources(where["cpus_per_worker"], where["use_gpu"]),
    )
    try:
        if resume and rtune.Tuner.can_restore(tune_path):
            _say(verbose, f"resuming the Tune experiment in {tune_path}")
            tuner = rtune.Tuner.restore(
                tune_path, trainable, resume_unfinished=True, resume_errored=True
            )
        else:
            shutil.rmtree(tune_path, ignore_errors=True)
            reports = spec["steps"] // search["report_every"] + 1
            tuner = rtune.Tuner(
                trainable,
                param_space=param_space(spec),
                tune_config=rtune.TuneConfig(
                    num_samples=search["num_samples"],
                    max_concurrent_trials=search["max_concurrent_trials"],
                    # a trial's process imports Ray Tune and ember: reuse it for the next one
                    reuse_actors=True,
                    scheduler=make_scheduler(spec["scheduler"], search, reports),
                    search_alg=search_alg,
                ),
                run_config=rtune.RunConfig(name=TUNE_DIR, storage_path=rd.path, verbose=0),
            )
        grid = tuner.fit()
    finally:
        if started_ray:
            from ..train._internal.ray_cluster import shutdown_if_started

            shutdown_if_started()
    result = _record(spec, rd, grid, verbose)
    rd.write_csv()
    result.rows = rd.rows()
    if report:
        from .report import write_report

        result.report = write_report(rd, spec)
        _say(verbose, f"report: {result.report}")
    return result


def _check_same_search(spec: ExperimentSpec, rd: RunDir, tune_path: str) -> None:
    """Tuner.restore reruns the saved experiment: refuse a spec whose trials differ from it."""
    import yaml

    saved = rd.file("spec.yaml")
    if not (os.path.isdir(tune_path) and os.path.exists(saved)):
        return
    with open(saved) as f:
        before = yaml.safe_load(f) or {}
    keys = ("search", "scheduler", "grid", "repetitions")
    changed = [k for k in keys if before.get(k) != spec.data.get(k)]
    if changed:
        raise SpecError(
            f"{rd.path} holds a Tune experiment of a spec with different {changed}; "
            "use another output directory or start afresh (fresh=True, or --fresh "
            "on the command line)"
        )


def _axis_values(spec: ExperimentSpec, axis: str) -> list:
    space = spec["search"]["space"].get(axis)
    if space is None:
        return list(spec["grid"][axis])
    if isinstance(space, dict):
        ((kind, args),) = space.items()
        return list(range(args[0], args[1])) if kind == "randint" else list(args)
    return [space]


def _record(spec: ExperimentSpec, rd: RunDir, grid, verbose: bool) -> ExperimentResult:
    """Append a row per trial not yet recorded: its measurement, or why it has none."""
    result = ExperimentResult(rd.path)
    # a failed trial's row is replaced when a resumed run finishes it
    recorded = {r.get("trial_id") for r in rd.rows() if r.get("status") != "failed"}
    for res in grid:
        m = res.metrics or {}
        trial_id = m.get("trial_id") or os.path.basename(res.path or "")
        if "ember_row" in m:
            row = json.loads(m["ember_row"])
        else:
            p = _trial_point(res.config)
            config_id, point_id = _trial_ids(spec, res.config, p)
            row = dict(_base_row(p, spec), point_id=point_id, config_id=config_id)
            if res.error is not None:
                detail = str(res.error).strip().splitlines()
                row.update(status="failed", error=" | ".join(detail[-3:])[-500:])
            else:  # stopped by the scheduler: its last progress report
                row.update(
                    status="stopped",
                    loss=m.get("loss"),
                    step_ms=m.get("step_ms"),
                    error=f"stopped early by the scheduler at step {m.get('step')}",
                )
        row["trial_id"] = trial_id
        bucket = {"ok": result.ran, "failed": result.failed}.get(row["status"], result.skipped)
        bucket.append(row["point_id"])
        if trial_id in recorded:
            continue
        rd.append(row)
        _say(verbose, f"[trial {trial_id}] {_describe(row)}")
    return result
