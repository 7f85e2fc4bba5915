"""``ember experiment`` on Ray Tune: the ``search:``/``scheduler:`` checks, the param space, and
real Tune sweeps of tiny Trainer trials (in parallel, with ASHA, resumed by Tuner.restore)."""

from __future__ import annotations

import csv
import os
import pathlib
import tempfile

import pytest

from ember.distributed.experiment import load_spec, run, tune
from ember.distributed.experiment.rundir import RunDir
from ember.distributed.experiment.spec import SpecError

ROOT = pathlib.Path(__file__).resolve().parents[1]
_FAIL_SEED = 7319  # the user workload below fails while its marker file exists


def _spec(**search) -> dict:
    return {
        "name": "tune",
        "workload": "tiny",
        "steps": 4,
        "warmup": 1,
        "compute_steps": 1,
        "trace_steps": 0,
        "calibration": {"sizes_kib": [4], "iters": 1},
        "grid": {"workers": [1], "batch_size": [8]},
        "search": {"report_every": 2, "max_concurrent_trials": 2, **search},
    }


# ---- checks before anything starts ------------------------------------------------------------
@pytest.mark.parametrize(
    "patch, match",
    [
        ({"search": {"spaces": {}}}, r"unknown key 'search\.spaces'"),
        ({"search": {"space": {"lrr": 0.1}}}, r"unknown key 'search\.space\.lrr'"),
        (
            {"search": {"space": {"lr": {"logunif": [1, 2]}}}},
            r"unknown key 'search\.space\.lr\.logunif'",
        ),
        ({"search": {"space": {"lr": {"loguniform": [0, 1]}}}}, r"'search\.space\.lr\.loguniform'"),
        ({"search": {"space": {"lr": [0.1, 0.2]}}}, r"'search\.space\.lr' takes one value"),
        ({"search": {"max_concurrent_trials": 0}}, r"'search\.max_concurrent_trials'"),
        ({"search": {"metric": "accuracy"}}, r"'search\.metric' must be one of"),
        ({"search": {}, "scheduler": {"name": "hyperband"}}, r"'scheduler\.name'"),
        (
            {"search": {}, "scheduler": {"name": "asha", "grace": 1}},
            r"unknown key 'scheduler\.grace'",
        ),
        (
            {"search": {}, "scheduler": {"name": "median_stopping", "reduction_factor": 2}},
            r"unknown key 'scheduler\.reduction_factor'",
        ),
        ({"scheduler": {"name": "asha"}}, r"'scheduler' needs a 'search:' section"),
    ],
)
def test_bad_tune_sections_are_named(tmp_path, patch, match):
    path = tmp_path / "spec.yaml"
    import yaml

    path.write_text(yaml.safe_dump({"workload": "tiny", **patch}))
    with pytest.raises(SpecError, match=match) as info:
        load_spec(str(path))
    assert str(path) in str(info.value)


def test_defaults_and_no_search_stays_sequential():
    assert load_spec({"workload": "tiny"})["search"] is None
    spec = load_spec(_spec(space={"lr": {"loguniform": [1e-4, 1e-1]}}))
    assert spec["search"]["num_samples"] == 1 and spec["search"]["metric"] == "loss"
    assert spec["scheduler"] == {"name": "fifo"}
    asha = load_spec(dict(_spec(), scheduler={"name": "asha"}))["scheduler"]
    assert asha == {"name": "asha", "grace_period": 1, "max_t": None, "reduction_factor": 2}
    with pytest.raises(SpecError, match="needs a 'search:' section"):
        tune({"workload": "tiny"})


def test_param_space_maps_grid_axes_and_spaces():
    pytest.importorskip("ray.tune")
    from ray.tune.search.sample import Categorical, Float, Integer

    from ember.distributed.experiment.tune_runner import param_space

    spec = load_spec(
        dict(
            _spec(
                space={
                    "lr": {"loguniform": [1e-4, 1e-1]},
                    "batch_size": {"choice": [8, 16]},
                    "bucket_cap_mb": {"randint": [1, 4]},
                    "momentum": {"uniform": [0.0, 0.9]},
                }
            ),
            grid={"workers": [1, 2]},
            repetitions=2,
        )
    )
    space = param_space(spec)
    assert space["workers"] == {"grid_search": [1, 2]} and space["rep"] == {"grid_search": [0, 1]}
    assert space["strategy"] == "ddp" and space["scaling"] == "weak"
    assert isinstance(space["lr"], Float) and space["lr"].lower == 1e-4
    assert isinstance(space["batch_size"], Categorical)
    assert space["batch_size"].categories == [8, 16]
    assert isinstance(space["bucket_cap_mb"], Integer) and isinstance(space["momentum"], Float)


# ---- real Ray Tune sweeps ---------------------------------------------------------------------
def user_workload(cfg):
    """A tiny user workload that fails while its marker file exists (the restore test)."""
    import ember
    from ember.utils.data import TensorDataset

    if os.path.exists(_marker()):
        raise RuntimeError("marker present: failing on purpose")
    n = cfg["num_samples"]
    return (
        ember.nn.Linear(6, 3),
        TensorDataset(ember.randn(n, 6), ember.randint(0, 3, (n,))),
        ember.nn.functional.cross_entropy,
    )


def _marker() -> str:
    return os.path.join(tempfile.gettempdir(), f"ember_tune_test_fail_{_FAIL_SEED}")


def test_tune_sweep_in_parallel_writes_rows_and_resumes(ray_session, tmp_path):
    out = str(tmp_path / "run")
    spec = _spec(space={"lr": {"grid_search": [1e-3, 1e-1]}})
    result = run(spec, out, verbose=False)  # a search: section sends run() to Tune
    assert (
        sorted(result.ran)
        == ["w1-ddp-auto-weak8-cap25-lr0.001-r0", "w1-ddp-auto-weak8-cap25-lr0.1-r0"]
        and not result.failed
    )
    rows = {r["point_id"]: r for r in RunDir(out).rows()}
    assert {r["lr"] for r in rows.values()} == {1e-3, 1e-1}
    for r in rows.values():
        assert r["status"] == "ok" and r["samples_per_s"] > 0 and r["trial_id"]
    with open(os.path.join(out, "results.csv")) as f:
        assert len(list(csv.DictReader(f))) == 2
    assert os.path.getsize(os.path.join(out, "report.md")) > 0
    assert os.path.isdir(os.path.join(out, "tune"))  # Tune's experiment state
    # again: Tuner.restore finds every trial finished; nothing reruns, no row is added
    again = tune(spec, out, verbose=False, report=False)
    assert sorted(again.ran) == sorted(result.ran)
    assert len(RunDir(out).rows()) == 2


@pytest.mark.full
def test_asha_stops_trials_and_restore_reruns_errored(ray_session, tmp_path):
    out = str(tmp_path / "asha")
    spec = dict(
        _spec(space={"lr": {"grid_search": [1e-4, 3e-4, 1e-2, 3e-1]}}),
        steps=8,
        scheduler={"name": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    result = tune(spec, out, verbose=False, report=False)
    statuses = [r["status"] for r in RunDir(out).rows()]
    assert len(statuses) == 4 and set(statuses) <= {"ok", "stopped"} and "ok" in statuses
    # an interrupted (errored) experiment: restore reruns the errored trials only
    pathlib.Path(_marker()).touch()
    try:
        user = dict(
            _spec(space={"lr": {"grid_search": [1e-3, 1e-2]}}),
            seed=_FAIL_SEED,
            workload=f"{__name__}:user_workload",
        )
        failed = tune(user, str(tmp_path / "restore"), verbose=False, report=False)
        assert len(failed.failed) == 2 and not failed.ran
    finally:
        os.remove(_marker())
    resumed = tune(user, str(tmp_path / "restore"), verbose=False, report=False)
    assert len(resumed.ran) == 2 and not resumed.failed
    assert result.ran or result.skipped


def test_worker_group_uses_the_enclosing_trial_bundles(ray_session):
    """Inside a trial's placement group (head bundle + one per worker) the WorkerGroup takes
    the worker bundles instead of asking for a second group the first already holds."""
    ray = ray_session
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from ember.distributed.train._internal.worker_group import _enclosing_group

    @ray.remote(num_cpus=0.01)
    def probe():
        out = []
        for n, bundle in ((2, {"CPU": 1}), (3, {"CPU": 1}), (2, {"CPU": 2})):
            pg, first = _enclosing_group(n, bundle)
            out.append((pg is not None, first))
        return out

    pg = placement_group([{"CPU": 0.01}, {"CPU": 1}, {"CPU": 1}])
    ray.get(pg.ready(), timeout=60)
    try:
        got = ray.get(
            probe.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=0
                )
            ).remote(),
            timeout=60,
        )
    finally:
        remove_placement_group(pg)
    # 2 one-CPU workers fit bundles 1-2; 3 workers, or 2-CPU workers, do not
    assert got == [(True, 1), (False, 0), (False, 0)]
    assert _enclosing_group(1, {"CPU": 1}) == (None, 0)  # the driver is in no group


def test_resume_refuses_a_changed_search(tmp_path):
    """Tuner.restore would rerun the saved trials: a changed space is refused before Ray."""
    out = tmp_path / "run"
    (out / "tune").mkdir(parents=True)
    (out / "spec.yaml").write_text(load_spec(_spec(space={"lr": 0.1})).to_yaml())
    with pytest.raises(SpecError, match=r"different \['search'\]"):
        tune(_spec(space={"lr": 0.2}), str(out), verbose=False)


def test_optuna_search_with_the_median_stopping_rule(ray_session, tmp_path):
    """Optuna's TPE sampler picks each trial's lr inside the space, seeded (two runs of the
    spec draw the same values); the median stopping rule sits on the trials' reports."""
    pytest.importorskip("optuna")
    spec = dict(
        _spec(space={"lr": {"loguniform": [1e-3, 1e-1]}}, algorithm="optuna", num_samples=2),
        scheduler={"name": "median_stopping", "grace_period": 1, "min_samples_required": 2},
    )
    spec["search"]["max_concurrent_trials"] = 1  # TPE reads the first trial's result
    out = str(tmp_path / "optuna")
    result = tune(spec, out, verbose=False, report=False)
    rows = RunDir(out).rows()
    assert len(rows) == 2 and len(result.ran) + len(result.skipped) == 2 and not result.failed
    lrs = sorted(r["lr"] for r in rows)
    assert all(1e-3 <= lr <= 1e-1 for lr in lrs) and lrs[0] != lrs[1]
    assert {r["status"] for r in rows} <= {"ok", "stopped"}
    again = tune(spec, str(tmp_path / "optuna_again"), verbose=False, report=False)
    assert sorted(r["lr"] for r in RunDir(str(tmp_path / "optuna_again")).rows()) == lrs
    assert len(again.ran) + len(again.skipped) == 2
