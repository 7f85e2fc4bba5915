"""``search: {algorithm: optuna}``: the spec checks, the error without optuna, and a real sweep
where Optuna's sampler picks every trial's learning rate."""

from __future__ import annotations

import sys

import pytest

from ember.distributed.experiment import load_spec, tune
from ember.distributed.experiment.rundir import RunDir
from ember.distributed.experiment.spec import SpecError
from ember.distributed.experiment.tune_spec import make_search_alg


def _spec(grid: dict | None = None, **search) -> dict:
    return {
        "name": "optuna",
        "workload": "tiny",
        "steps": 4,
        "warmup": 1,
        "compute_steps": 1,
        "trace_steps": 0,
        "calibration": {"sizes_kib": [4], "iters": 1},
        "grid": grid or {"workers": [1], "batch_size": [8]},
        "search": {"report_every": 2, "algorithm": "optuna", **search},
    }


@pytest.mark.parametrize(
    "spec, match",
    [
        (_spec(space={"lr": {"grid_search": [0.1, 0.2]}}), r"'search\.space\.lr' is a grid_search"),
        (_spec(grid={"workers": [1, 2]}), r"'grid\.workers' has 2 values"),
        (dict(_spec(), repetitions=2), r"'repetitions' must be 1 with algorithm 'optuna'"),
        (_spec(algorithm="hyperopt"), r"'search\.algorithm' must be one of \('basic', 'optuna'\)"),
        (_spec(seed="x"), r"'search\.seed' must be null or an integer"),
    ],
)
def test_optuna_spec_errors_name_the_key(spec, match):
    with pytest.raises(SpecError, match=match):
        load_spec(spec)


def test_default_algorithm_is_basic():
    search = load_spec(dict(_spec(), search={"space": {}}))["search"]
    assert search["algorithm"] == "basic" and make_search_alg(search, 0) is None


def test_missing_optuna_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    spec = _spec(space={"lr": {"loguniform": [1e-3, 1e-1]}})
    with pytest.raises(SpecError, match=r"needs the optuna package.*pip install optuna"):
        tune(spec, str(tmp_path / "run"), verbose=False)
    assert not (tmp_path / "run" / "tune").exists()  # refused before anything started


def test_optuna_searcher_is_seeded():
    pytest.importorskip("optuna")
    search = load_spec(_spec(space={"lr": {"loguniform": [1e-3, 1e-1]}}, seed=5))["search"]
    alg = make_search_alg(search, 0)
    assert type(alg).__name__ == "OptunaSearch"
    assert alg._metric == "loss" and alg._mode == "min" and alg._seed == 5


@pytest.mark.full  # CI: the searcher is built and checked above; this runs three trials
def test_optuna_sweep_samples_the_space(ray_session, tmp_path):
    pytest.importorskip("optuna")
    out = str(tmp_path / "run")
    spec = _spec(
        space={"lr": {"loguniform": [1e-3, 1e-1]}, "momentum": {"choice": [0.0, 0.9]}},
        num_samples=3,
        max_concurrent_trials=2,
        seed=3,
    )
    result = tune(spec, out, verbose=False, report=False)
    assert len(result.ran) == 3 and not result.failed, result
    rows = RunDir(out).rows()
    assert len(rows) == 3
    for r in rows:
        assert r["status"] == "ok" and r["loss"] > 0
        assert 1e-3 <= r["lr"] <= 1e-1
    assert len({r["lr"] for r in rows}) == 3  # sampled, not a fixed value


def test_a_reused_trial_keeps_its_worker_processes(ray_session):
    """A Tune trial actor runs its trials' WorkerGroups in one placement group: with reuse, the
    next group takes the kept actors (same process) instead of starting new ones; a plain
    shutdown, or a group without reuse, kills them."""
    ray = ray_session
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    @ray.remote(num_cpus=0.01)
    def trial():
        from ember.distributed.train._internal import worker_group as wg

        pids = []
        for keep in (True, True, False):
            group = wg.WorkerGroup(1, {"CPU": 1}, reuse=True)
            pids.append(group.infos[0].pid)
            group.shutdown(keep=keep)
        fresh = wg.WorkerGroup(1, {"CPU": 1}, reuse=True)  # the last shutdown killed them
        pids.append(fresh.infos[0].pid)
        fresh.shutdown()
        return pids, len(wg._KEPT)

    pg = placement_group([{"CPU": 0.01}, {"CPU": 1}])
    ray.get(pg.ready(), timeout=60)
    try:
        pids, kept = ray.get(
            trial.options(
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=0
                )
            ).remote(),
            timeout=180,
        )
    finally:
        remove_placement_group(pg)
    assert pids[0] == pids[1] == pids[2] != pids[3], pids
    assert kept == 0
