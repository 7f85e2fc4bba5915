"""Scale-out experiments: spec checks, the α-β cost model against hand-computed cases, the run
directory's resume rules, and a real sweep (1-2 workers x 2 configurations) through the Trainer
that writes the CSV, the report, the plots and the timelines."""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib

import pytest

from ember.distributed.experiment import costmodel as cm
from ember.distributed.experiment import load_spec, run
from ember.distributed.experiment.report import TABLE_COLUMNS
from ember.distributed.experiment.rundir import RunDir, with_efficiency
from ember.distributed.experiment.runner import available_strategies
from ember.distributed.experiment.spec import SpecError

ROOT = pathlib.Path(__file__).resolve().parents[1]


# ---- spec ---------------------------------------------------------------------------------------
def _write(tmp_path, text: str) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return str(path)


def test_unknown_key_names_file_and_key(tmp_path):
    path = _write(tmp_path, "workload: tiny\ngrid:\n  wokers: [1, 2]\n")
    with pytest.raises(SpecError, match=r"spec\.yaml: unknown key 'grid\.wokers'"):
        load_spec(path)
    path = _write(tmp_path, "workload: tiny\nstep: 3\n")
    with pytest.raises(SpecError, match=r"spec\.yaml: unknown key 'step' \(allowed here: name"):
        load_spec(path)
    path = _write(
        tmp_path,
        "projection:\n  interconnects:\n    - {name: x, bandwidth_gbit: 1, "
        "latency_us: 1, mtu: 9000}\n",
    )
    with pytest.raises(SpecError, match=r"unknown key projection\.interconnects\[0\]\.'mtu'"):
        load_spec(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ("grid: {strategy: [ddp, zero4]}", r"'grid\.strategy' values must be among"),
        ("grid: {workers: [0]}", r"'grid\.workers' must be an integer >= 1, got 0"),
        ("grid: {workers: [1, 1]}", r"'grid\.workers' has repeated values"),
        (
            "grid: {workers: [1, 3], batch_size: 64, scaling: strong}",
            r"64 \(a global batch under strong scaling\) does not split evenly over \[3\] workers",
        ),
        ("workload: resnet", r"'workload' must be one of"),
        ("steps: 0", r"'steps' must be an integer >= 1"),
        ("optimizer: {name: lamb}", r"'optimizer\.name' must be 'adam' or 'sgd'"),
        (
            "where: {address: 'a:1', cluster: c.yaml}",
            r"'where' takes either 'address' or 'cluster'",
        ),
        ("grid: 3", r"'grid' must be a mapping"),
    ],
)
def test_bad_values_are_named(tmp_path, text, match):
    with pytest.raises(SpecError, match=match):
        load_spec(_write(tmp_path, text))


def test_grid_points_and_batches():
    spec = load_spec(
        {
            "workload": "tiny",
            "repetitions": 2,
            "grid": {
                "workers": [2, 1],
                "strategy": "ddp",
                "batch_size": [8],
                "scaling": ["weak", "strong"],
                "bucket_cap_mb": [25, 1],
            },
        }
    )
    pts = spec.points()
    assert len(pts) == 2 * 2 * 2 * 2
    # worker counts ascending within a configuration, repetitions together
    assert [p.id for p in pts[:4]] == [
        "w1-ddp-auto-weak8-cap25-r0",
        "w1-ddp-auto-weak8-cap25-r1",
        "w2-ddp-auto-weak8-cap25-r0",
        "w2-ddp-auto-weak8-cap25-r1",
    ]
    strong = [p for p in pts if p.scaling == "strong" and p.workers == 2][0]
    assert (strong.per_worker_batch, strong.global_batch) == (4, 8)
    weak = [p for p in pts if p.scaling == "weak" and p.workers == 2][0]
    assert (weak.per_worker_batch, weak.global_batch) == (8, 16)


def test_cluster_needs_the_command_line_or_an_address(tmp_path):
    spec = {"workload": "tiny", "where": {"cluster": "cluster_configs/local.yaml"}}
    with pytest.raises(SpecError, match="pass address="):
        run(spec, str(tmp_path / "never"), verbose=False)
    assert not (tmp_path / "never").exists()


def test_default_batch_is_the_workloads():
    assert load_spec({"workload": "mlp"})["grid"]["batch_size"] == [128]


def test_example_spec_is_valid():
    spec = load_spec(ROOT / "examples" / "experiments" / "mlp_scaling.yaml")
    assert spec.name == "mlp_scaling" and spec["grid"]["workers"] == [1, 2]


# ---- cost model: hand-computed cases ------------------------------------------------------------
IC = cm.Interconnect("test", alpha=1e-5, beta=1e-9)  # 10 µs, 1 GB/s


def test_ring_collectives_by_hand():
    # allreduce, 4 ranks, 1 MB: 2·3·10 µs + 2·3/4 · 1e6 B · 1 ns/B = 60 µs + 1.5 ms
    assert cm.collective_time("allreduce", 4, 1e6, IC) == pytest.approx(1.56e-3)
    # all-gather / reduce-scatter: 3·10 µs + 3/4 · 1 ms
    assert cm.collective_time("allgather", 4, 1e6, IC) == pytest.approx(7.8e-4)
    assert cm.collective_time("reduce_scatter", 4, 1e6, IC) == pytest.approx(7.8e-4)
    # three buckets pay the latency three times
    assert cm.collective_time("allreduce", 4, 1e6, IC, messages=3) == pytest.approx(1.68e-3)
    assert cm.collective_time("allreduce", 1, 1e6, IC) == 0.0


def test_strategies_by_hand():
    assert cm.comm_time("ddp", 4, 1e6, IC) == pytest.approx(1.56e-3)
    assert cm.comm_time("zero1", 4, 1e6, IC) == pytest.approx(1.56e-3 + 7.8e-4)
    assert cm.comm_time("zero2", 4, 1e6, IC) == pytest.approx(2 * 7.8e-4)
    assert cm.comm_time("fsdp", 4, 1e6, IC) == pytest.approx(3 * 7.8e-4)
    # buckets multiply the latency of the gradient collective only
    assert cm.comm_time("zero1", 4, 1e6, IC, messages=3) == pytest.approx(1.68e-3 + 7.8e-4)
    assert cm.comm_time("fsdp", 4, 1e6, IC, messages=3) == pytest.approx(3 * 7.8e-4)
    assert cm.wire_bytes("ddp", 4, 1e6) == pytest.approx(1.5e6)
    assert cm.wire_bytes("zero1", 4, 1e6) == pytest.approx(2.25e6)
    assert cm.wire_bytes("fsdp", 1, 1e6) == 0.0
    with pytest.raises(ValueError, match="unknown strategy 'pipeline'"):
        cm.comm_time("pipeline", 2, 1.0, IC)


def test_interconnect_figures_and_buckets():
    ic = cm.Interconnect.from_figures("25GbE", bandwidth_gbit=25, latency_us=25)
    assert ic.alpha == pytest.approx(25e-6)
    assert ic.beta == pytest.approx(8 / 25e9)
    assert ic.bandwidth_gbps == pytest.approx(3.125)
    mib = 1 << 20
    assert cm.ddp_buckets(0.5 * mib, None) == 1  # default: all in the 1 MiB first bucket
    assert cm.ddp_buckets(25 * mib, None) == 2  # default: 1 MiB, then 24 MiB
    assert cm.ddp_buckets(25 * mib, 25) == 1  # an explicit cap: equal buckets
    assert cm.ddp_buckets(3 * mib, 0.5) == 6  # six of 0.5 MiB


def test_step_and_efficiency_by_hand():
    model = cm.CostModel(cm.ComputeModel(fixed_s=0.0, per_sample_s=1e-4))
    parts = model.step("ddp", 4, 100, 1e6, IC)
    assert parts["compute"] == pytest.approx(0.01)
    assert parts["step"] == pytest.approx(0.01156)
    # weak scaling: T(1) / T(n)
    assert model.efficiency("ddp", 4, 100, "weak", 1e6, IC) == pytest.approx(0.01 / 0.01156)
    # a tenth of compute hides communication: exposed 1.56 ms - 1 ms
    model.overlap["ddp"] = 0.1
    assert model.step("ddp", 4, 100, 1e6, IC)["exposed"] == pytest.approx(5.6e-4)
    assert model.efficiency("ddp", 4, 100, "weak", 1e6, IC) == pytest.approx(0.01 / 0.01056)
    # strong scaling, global batch 400, 2 ms fixed per step: T1 = 42 ms, T4 = 12 ms + 1.56 ms
    model = cm.CostModel(cm.ComputeModel(fixed_s=0.002, per_sample_s=1e-4))
    eff = model.efficiency("ddp", 4, 400, "strong", 1e6, IC)
    assert eff == pytest.approx(0.042 / (4 * 0.01356))
    assert model.efficiency("ddp", 1, 400, "strong", 1e6, IC) == pytest.approx(1.0)


def test_calibration_recovers_known_figures():
    samples = [
        (n, s, 2 * (n - 1) * 3e-5 + 2 * (n - 1) / n * s * 5e-10)
        for n in (2, 4)
        for s in (4096, 1 << 20, 16 << 20)
    ]
    ic = cm.fit_alpha_beta(samples)
    assert ic.alpha == pytest.approx(3e-5, rel=1e-6)
    assert ic.beta == pytest.approx(5e-10, rel=1e-6)
    with pytest.raises(ValueError, match="more than one worker"):
        cm.fit_alpha_beta([(1, 4096, 1e-3)])
    comp = cm.ComputeModel.fit([(32, 0.002 + 32e-4), (128, 0.002 + 128e-4)], [(32, 3.2e-4)])
    assert comp.fixed_s == pytest.approx(0.002)
    assert comp.per_sample_s == pytest.approx(1e-4)
    assert comp.data_per_sample_s == pytest.approx(1e-5)
    assert comp.rate == pytest.approx(1e4)
    one = cm.ComputeModel.fit([(64, 0.0064)])  # one batch size: a line through the origin
    assert (one.fixed_s, one.per_sample_s) == (0.0, pytest.approx(1e-4))
    model = cm.CostModel(comp)
    # predicted comm 1.56 ms, measured exposed 0.56 ms, compute 10 ms: o = 0.1
    assert model.fit_overlap("ddp", [(4, 0.01, 1e6, 1, 5.6e-4, IC)]) == pytest.approx(0.1)
    assert model.fit_overlap("zero1", [(1, 0.01, 1e6, 1, 0.0, IC)]) == 0.0


# ---- run directory -------------------------------------------------------------------------------
def _row(pid, status="ok", workers=1, sps=100.0, **kw):
    return dict(
        {
            "point_id": pid,
            "config_id": pid.rsplit("-r", 1)[0],
            "status": status,
            "workers": workers,
            "strategy": "ddp",
            "backend": "auto",
            "scaling": "weak",
            "batch_size": 8,
            "bucket_cap_mb": 25.0,
            "samples_per_s": sps,
        },
        **kw,
    )


def test_rows_resume_rules(tmp_path):
    spec = load_spec({"workload": "tiny"})
    rd = RunDir(str(tmp_path / "run"))
    rd.prepare(spec)
    rd.append(_row("w1-a-r0"))
    rd.append(_row("w2-a-r0", status="failed", workers=2))
    with open(rd.file("results.jsonl"), "a") as f:
        f.write('{"point_id": "w2-b-r0", "status": "o')  # torn by an interruption
    assert rd.finished() == {"w1-a-r0"}  # failed and torn points run again
    rd.append(_row("w2-a-r0", workers=2, sps=150.0))  # the retry supersedes the failure
    assert rd.finished() == {"w1-a-r0", "w2-a-r0"}
    assert [r["point_id"] for r in rd.rows()] == ["w1-a-r0", "w2-a-r0"]
    with open(rd.file("results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["scaling_efficiency"] for r in rows] == ["1.0", "0.75"]
    # a spec measuring something else must not mix with these rows
    with pytest.raises(SpecError, match=r"different \['steps'\]"):
        rd.prepare(load_spec({"workload": "tiny", "steps": 7}))
    rd.prepare(load_spec({"workload": "tiny", "grid": {"workers": [1, 2, 4]}}))  # grid may grow
    rd.prepare(load_spec({"workload": "tiny", "steps": 7}), fresh=True)
    assert rd.rows() == []


def test_efficiency_falls_back_to_any_one_worker_baseline():
    rows = with_efficiency(
        [_row("w1-x-r0", sps=100.0), _row("w2-y-r0", workers=2, sps=120.0, strategy="zero1")]
    )
    assert rows[1]["scaling_efficiency"] == pytest.approx(0.6)


# ---- a real sweep through the Trainer -----------------------------------------------------------
def _sweep_spec(workers):
    others = [s for s in available_strategies() if s != "ddp"]
    if others:  # two strategies once sharding exists
        grid = {"strategy": ["ddp", others[0]], "bucket_cap_mb": [25]}
    else:  # else DDP twice, with different bucket sizes
        grid = {"strategy": ["ddp"], "bucket_cap_mb": [25, 0.001]}
    grid.update(workers=workers, batch_size=[8])
    return {
        "name": "ci",
        "workload": "tiny",
        "steps": 4,
        "warmup": 1,
        "compute_steps": 2,
        "trace_steps": 2,
        "grid": grid,
        "calibration": {"sizes_kib": [4], "iters": 2},
        "projection": {"workers": [8, 64, 1024]},
    }


@pytest.fixture(scope="module")
def sweep(ray_session, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("experiment") / "run")
    first = run(_sweep_spec([1]), out, verbose=False, report=False)
    before = {r["point_id"]: r for r in RunDir(out).rows()}
    second = run(_sweep_spec([1, 2]), out, verbose=False)
    return {"out": out, "first": first, "second": second, "before": before}


def test_resume_skips_finished_points(sweep):
    first, second = sweep["first"], sweep["second"]
    assert len(first.ran) == 2 and not first.failed
    assert sorted(second.skipped) == sorted(first.ran)
    assert len(second.ran) == 2 and all(p.startswith("w2-") for p in second.ran)
    after = {r["point_id"]: r for r in RunDir(sweep["out"]).rows()}
    for pid, row in sweep["before"].items():  # the finished rows are untouched
        assert after[pid] == row


def test_sweep_writes_csv_report_plots_and_timelines(sweep):
    out = pathlib.Path(sweep["out"])
    for name in ("results.csv", "results.jsonl", "spec.yaml", "environment.json", "report.md"):
        assert (out / name).stat().st_size > 0, name
    for png in ("throughput", "efficiency", "breakdown", "memory", "projection"):
        data = (out / "plots" / f"{png}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert float(r["samples_per_s"]) > 0 and float(r["step_ms"]) > 0
        assert float(r["loss"]) > 0 and float(r["rss_peak_mib"]) > 10
        # ember.distributed.memory_report when the build has it, else the peak RSS
        assert float(r["mem_mib"]) > 0 and r["mem_source"] in ("memory report", "peak RSS")
        if r["workers"] == "2":  # gradients went over the wire, at the measured rate
            assert float(r["sent_mib_per_step"]) > 0 and float(r["busbw_gbps"]) > 0
            assert 0 < float(r["scaling_efficiency"]) < 5
        else:
            assert r["scaling_efficiency"] == "1.0"
    env = json.loads((out / "environment.json").read_text())
    assert env[-1]["versions"]["ember"] and env[-1]["machine"]["cpu_count"]
    two = [r["point_id"] for r in rows if r["workers"] == "2"][0]
    trace = json.loads((out / "timeline" / f"{two}.json").read_text())
    spans = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert {e["pid"] for e in spans} == {0, 1}
    names = {e["name"] for e in spans}
    assert {"forward", "backward", "optimizer", "data"} <= names
    assert any(n.startswith("allreduce bucket") for n in names)  # "bucket 0" or "buckets 0-1"
    assert all(e["dur"] >= 0 for e in spans)


def test_report_table_matches_csv(sweep):
    out = pathlib.Path(sweep["out"])
    with open(out / "results.csv") as f:
        rows = {r["point_id"]: r for r in csv.DictReader(f)}
    text = (out / "report.md").read_text()
    section = text.split("## Measured points", 1)[1].split("\n\n", 2)[1]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [h for _, h in TABLE_COLUMNS]
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[1:]]
    assert sorted(b[0] for b in body) == sorted(rows)
    for cells in body:
        csv_row = rows[cells[0]]
        for (col, _), cell in zip(TABLE_COLUMNS, cells):
            assert cell == csv_row[col], (cells[0], col)
            if cell and col not in ("point_id", "strategy", "backend"):
                assert math.isfinite(float(cell))
    assert "## Cost model" in text and "### Projection" in text
    assert "off by" in text  # the model's error on the measured points
    proj = text.split("### Projection", 1)[1]
    header = [ln for ln in proj.splitlines() if ln.startswith("| interconnect |")][0]
    assert header.endswith("| strategy | 8 | 64 | 1024 |")


def test_cli_report_only_and_bad_spec(sweep, tmp_path, capsys):
    from ember.launcher.cli import main

    os.remove(os.path.join(sweep["out"], "report.md"))
    spec = tmp_path / "s.yaml"
    spec.write_text("workload: tiny\nname: ci\n")
    assert main(["experiment", str(spec), "--out", sweep["out"], "--report-only"]) == 0
    assert os.path.getsize(os.path.join(sweep["out"], "report.md")) > 0
    spec.write_text("workload: tiny\nrepetition: 2\n")
    assert main(["experiment", str(spec)]) == 2
    assert "unknown key 'repetition'" in capsys.readouterr().err


# ---- a user's workload ---------------------------------------------------------------------------
def user_workload(config):
    """A workload given as 'module:function': (model, dataset, loss_fn)."""
    import ember
    from ember.utils.data import TensorDataset

    n = config["num_samples"]
    model = ember.nn.Linear(6, 3)
    data = TensorDataset(ember.randn(n, 6), ember.randint(0, 3, (n,)))
    return model, data, ember.nn.functional.cross_entropy


def test_user_workload_runs(ray_session, tmp_path):
    spec = {
        "workload": f"{__name__}:user_workload",
        "steps": 2,
        "warmup": 1,
        "compute_steps": 1,
        "trace_steps": 0,
        "grid": {"workers": [1], "batch_size": 4},
    }
    result = run(spec, str(tmp_path / "user"), verbose=False, report=False)
    assert result.ran == ["w1-ddp-auto-weak4-cap25-r0"] and not result.failed
    assert result.rows[0]["n_params"] == 6 * 3 + 3
    with pytest.raises(SpecError, match="must be given for a user workload"):
        load_spec({"workload": f"{__name__}:user_workload"})
