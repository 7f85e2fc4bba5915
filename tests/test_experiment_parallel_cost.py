"""The α-β cost of TP, PP and TP × DP (distributed/experiment/parallel_cost.py): byte counts
equal to the analytical formulas and to the bytes a real 2-rank run hands to the transports,
times by hand, the bubble against the pipeline schedules' simulator, and the wiring into
``ember experiment``'s projection (spec section, curves, report) and benchmarks/parallelism.py's
``--project`` table. No timing is asserted."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from ember.distributed.experiment import costmodel as cm
from ember.distributed.experiment import mp_projection as mpp
from ember.distributed.experiment import parallel_cost as pc
from ember.distributed.experiment.spec import SpecError, load_spec

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "parallelism.py"
IC = cm.Interconnect("test", alpha=1e-5, beta=1e-9)
TINY = pc.GPTShape(vocab=512, d_model=64, heads=4, layers=4, seq=32, batch=16)


def _bench(name: str = "parallelism"):
    import importlib

    sys.path.insert(0, str(BENCH.parent))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH.parent))


def test_runtime_threshold_is_the_models():
    from ember.distributed._runtime import _algorithms

    assert pc.SMALL_BYTES == _algorithms.SMALL_BYTES


def test_parameter_bytes_are_the_benchmark_models():
    bench = _bench()
    cfg = bench.SIZES["tiny"]
    assert pc.param_bytes(TINY) == [p.numel() * 4 for p in bench.build_gpt(cfg).parameters()]
    assert TINY.params == 265344
    # TP over 2 ranks halves the block linears: 4 x 12 d^2 / 2 fewer parameters
    assert TINY.tp_local_params(2) == 265344 - 4 * 12 * 64 * 64 // 2
    assert sum(pc.param_bytes(TINY, 2)) == 4 * TINY.tp_local_params(2)


@pytest.mark.parametrize("n", [2, 4])
def test_wire_bytes_are_the_formulas(n):
    a = 16 * 32 * 64 * 4  # one activation of the whole batch, 128 KiB: a ring allreduce
    ring = 2 * (n - 1) / n
    assert pc.wire_bytes("tp", TINY, n) == 6 * 4 * ring * a
    assert pc.wire_bytes("tp", TINY, n, allreduces_per_block=4) == 4 * 4 * ring * a
    assert pc.wire_bytes("pp", TINY, n) == (2 * (n - 1) * a + (n - 1) * 512) / n
    g = 4 * 265344
    assert pc.wire_bytes("dp", TINY, n) == pytest.approx(ring * g)  # both buckets > 64 KiB
    root = (32 * 64 + 2 * 64) * 4  # position embedding and final norm: outside every unit
    assert pc.wire_bytes("fsdp", TINY, n) == pytest.approx((n - 1) / n * (3 * g - root))
    # the same counts as the benchmark's analytical column, every size and strategy
    bench = _bench()
    for size, cfg in bench.SIZES.items():
        shape = pc.GPTShape(cfg["vocab"], cfg["d"], cfg["heads"], cfg["layers"], cfg["seq"], 16)
        sizes = pc.param_bytes(shape)
        for s in ("dp", "fsdp", "tp", "pp"):
            want = bench.analytical(s, cfg, sizes, n=n)
            assert pc.wire_bytes(s, shape, n) == pytest.approx(want, rel=1e-12), (size, s)
    if n == 4:  # TP x DP 2 x 2: TP on half the batch (64 KiB: direct), dp per local tensor
        local = pc.param_bytes(TINY, 2)
        want = 6 * 4 * a / 2 + sum(local)  # n = 2: ring and direct both send S once
        assert pc.wire_bytes("tpdp", TINY, 4, tp=2) == want
        assert want == bench.analytical("tpdp", bench.SIZES["tiny"], [], local)


def test_step_times_by_hand():
    a, L = TINY.activation_bytes(), 4
    share = TINY.block_share
    # TP over 4: 24 ring allreduces of A; blocks' compute / 4, the head's whole
    tp = pc.step_parts("tp", TINY, 4, IC, compute_s=1.0, optim_s=0.1)
    assert tp["comm"] == pytest.approx(6 * L * (6e-5 + 1.5 * a * 1e-9))
    assert tp["compute"] == pytest.approx(share / 4 + 1 - share)
    assert tp["optim"] == pytest.approx(0.1 * TINY.tp_local_params(4) / TINY.params)
    assert tp["step"] == pytest.approx(tp["compute"] + tp["optim"] + tp["comm"])
    # a direct exchange below 64 KiB: n - 1 messages of S
    assert pc.allreduce_time(4, 1000, IC) == pytest.approx(3 * (1e-5 + 1000e-9))
    # PP over 4 stages, 4 micro-batches of 1F1B: bubble 3/7; the last stage's share
    pp = pc.step_parts("pp", TINY, 4, IC, compute_s=1.0, microbatches=4)
    stage = (L / 4 * TINY.block_flops + TINY.head_flops) / (L * TINY.block_flops + TINY.head_flops)
    assert pp["compute"] == pytest.approx(stage * 7 / 4)
    assert pp["bubble"] == pytest.approx(stage * 3 / 4)
    assert pp["comm"] == pytest.approx(7 * 2 * (1e-5 + a / 4 * 1e-9))
    # TP x DP 2 x 2: half the batch per TP group, then the dp allreduces of local tensors
    td = pc.step_parts("tpdp", TINY, 4, IC, compute_s=1.0, tp=2)
    dp_part = sum(pc.allreduce_time(2, x, IC) for x in pc.param_bytes(TINY, 2))
    assert td["comm"] == pytest.approx(6 * L * pc.allreduce_time(2, a / 2, IC) + dp_part)
    assert td["compute"] == pytest.approx((share / 2 + 1 - share) / 2)
    # DP and FSDP: the same collectives as the data-parallel model
    dp = pc.step_parts("dp", TINY, 2, IC, compute_s=1.0, optim_s=0.1)
    assert dp["comm"] == pytest.approx(
        sum(cm.collective_time("allreduce", 2, b, IC) for b in pc.ddp_buckets(pc.param_bytes(TINY)))
    )
    assert (dp["compute"], dp["optim"]) == (0.5, 0.1)


@pytest.mark.parametrize(
    "schedule, p, m, v, want",
    [("gpipe", 4, 4, 1, 3 / 7), ("1f1b", 4, 8, 2, 3 / 11), ("interleaved", 4, 4, 2, 3 / 11)],
)
def test_bubble_is_the_simulated_schedules(schedule, p, m, v, want):
    from ember.distributed.pipelining import _orders as orders

    assert pc.bubble(p, m, schedule, v) == pytest.approx(want)
    if schedule == "interleaved":
        order = {r: orders.interleaved_order(r, p, v, m) for r in range(p)}
        stages = p * v
    else:
        fn = orders.gpipe_order if schedule == "gpipe" else orders.one_f_one_b_order
        order, stages = {r: fn(r, p, m) for r in range(p)}, p
    sim = orders.theoretical_bubble(order, stages)
    assert max(sim.values()) == pytest.approx(want)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown strategy 'zero3'"):
        pc.wire_bytes("zero3", TINY, 2)
    with pytest.raises(ValueError, match="unknown pipeline schedule 'zb'"):
        pc.bubble(2, 2, "zb")
    with pytest.raises(ValueError, match="tp=3"):
        pc.step_parts("tpdp", TINY, 4, IC, 1.0, tp=3)
    with pytest.raises(ValueError, match="4 layers do not split into 3"):
        pc.step_parts("pp", TINY, 3, IC, 1.0)
    with pytest.raises(ValueError, match="d_model 65 is not divisible by heads 4"):
        pc.GPTShape(512, 65, 4, 4, 32, 16)


# ---- ember experiment: spec, curves, report -----------------------------------------------------
MP = {"vocab": 512, "d_model": 64, "heads": 4, "layers": 4, "seq": 32}


@pytest.mark.parametrize(
    "section, match",
    [
        ({**MP, "tpp": 2}, "unknown key 'projection.model_parallel.tpp'"),
        ({k: v for k, v in MP.items() if k != "seq"}, "is missing 'seq'"),
        ({**MP, "schedule": "zb"}, "must be one of"),
        ({**MP, "strategies": ["tp", "ddp"]}, "values must be among"),
    ],
)
def test_spec_section_errors(section, match):
    with pytest.raises(SpecError, match=match):
        load_spec({"projection": {"model_parallel": section}})


def test_curves_reach_the_projection_and_report():
    spec = load_spec(
        {
            "workload": "tiny",
            "grid": {"scaling": "strong", "batch_size": 16},
            "projection": {"workers": [8], "model_parallel": {**MP, "microbatches": 4}},
        }
    )
    mp = spec["projection"]["model_parallel"]
    assert mp["strategies"] == ["tp", "pp", "tpdp"] and mp["tp"] == 2
    comp = cm.ComputeModel(0.0, 1e-3)
    an = SimpleNamespace(curves={}, projection_model=cm.CostModel(comp))
    mpp.add_curves(an, spec, [1, 2, 4, 8], [IC])
    tp = dict(an.curves[("test", "tp")])
    assert tp[1] == pytest.approx(1.0) and math.isnan(tp[8])  # 8 ranks > 4 heads
    # efficiency = one worker's step / (n x the n-worker step) for the same global batch
    t4 = pc.step_parts("tp", pc.GPTShape(**MP, batch=16), 4, IC, 16e-3)["step"]
    assert tp[4] == pytest.approx(16e-3 / (4 * t4))
    assert math.isnan(dict(an.curves[("test", "tpdp")])[1])  # tp = 2 needs 2 ranks
    # through analyse(): rows of a 1- and a 2-worker DDP point
    from ember.distributed.experiment.projection import analyse
    from ember.distributed.experiment.report import _projection

    rows = [_row(1, 10.0), _row(2, 6.0)]
    an = analyse(spec, rows)
    link = "this machine (auto)"
    assert {(link, s) for s in ("ddp", "tp", "pp", "tpdp")} <= set(an.curves)
    text = "\n".join(_projection(an, spec))
    assert f"| {link} |" in text and "| tp |" in text and "| - |" in text


def _row(n: int, step_ms: float) -> dict:
    return {
        "config_id": f"w{n}",
        "point_id": f"w{n}-r0",
        "status": "ok",
        "workers": n,
        "strategy": "ddp",
        "backend": "auto",
        "scaling": "strong",
        "batch_size": 16,
        "per_worker_batch": 16 // n,
        "global_batch": 16,
        "bucket_cap_mb": 25.0,
        "grad_bytes": 4 * 660,
        "n_params": 660,
        "mem_source": "memory report",
        "samples_per_s": 16 / step_ms * 1e3,
        "scaling_efficiency": 10.0 / (n * step_ms),
        "step_ms": step_ms,
        "compute_ms": step_ms * 0.9,
        "comm_exposed_ms": step_ms * 0.05,
        "data_ms": 0.1,
        "allreduce": [[4096, 1e-4], [1 << 20, 2e-3]] if n > 1 else [],
    }


# ---- the benchmark's --project table ------------------------------------------------------------
def test_benchmark_projection_table():
    bench = _bench("parallelism_projection")
    samples = [[2, s, 2 * 1e-4 + s * 2e-9] for s in bench.CALIB_BYTES]  # α 100 µs, β 2 ns/B
    cal = {"allreduce": samples, "compute": {"tiny": 0.2}, "optim": {"tiny": 0.01}}
    slow = dict(cal, allreduce=[[n, s, 2 * t] for n, s, t in samples])
    args = SimpleNamespace(
        calibration=[cal, slow], backend="grpc", world=2, microbatches=4, size=["tiny"]
    )
    cell = {"size": "tiny", "strategy": "tp", "step_min": 0.25}
    rows, info = bench.project(args, [[cell], [dict(cell, step_min=0.3)]])
    # the slowest rank's allreduces fit the link; its best step is the measurement
    ic = cm.fit_alpha_beta([[n, s, 2 * t] for n, s, t in samples])
    assert info["alpha_us"] == pytest.approx(ic.alpha * 1e6) == pytest.approx(200.0)
    parts = pc.step_parts("tp", TINY, 2, ic, 0.2, 0.01)
    assert rows == [
        [
            "tiny",
            "tp",
            "300.0",
            f"{1e3 * parts['step']:.1f}",
            f"{parts['step'] / 0.3:.2f}",
            f"{1e3 * (parts['compute'] + parts['optim']):.1f}",
            f"{1e3 * parts['comm']:.1f}",
            "0.0",
        ]
    ]


@pytest.mark.full
def test_benchmark_projection_on_two_ranks(tmp_path):
    out = tmp_path / "rows.json"
    argv = ["--world", "2", "--size", "tiny", "--strategies", "tp,pp", "--steps", "1"]
    r = subprocess.run(
        [sys.executable, str(BENCH), *argv, "--project", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads(out.read_text())
    # the bytes each rank handed to the transports are the cost model's
    (tp_sent, tp_anal), (pp_sent, pp_anal) = res["bytes"]
    assert tp_sent == tp_anal == pc.wire_bytes("tp", TINY, 2)
    assert pp_sent == pp_anal == pc.wire_bytes("pp", TINY, 2)
    # the projection is step_parts on this run's fitted link and compute reference
    cal = res["calibration"]
    ic = cm.fit_alpha_beta(cal["allreduce"])
    assert ic.alpha * 1e6 == pytest.approx(cal["alpha_us"])
    comp, opt = cal["compute_ms"]["tiny"] / 1e3, cal["optim_ms"]["tiny"] / 1e3
    assert [row[1] for row in res["projection"]] == ["tp", "pp"]
    for row in res["projection"]:
        want = pc.step_parts(row[1], TINY, 2, ic, comp, opt, microbatches=4)["step"]
        assert float(row[3]) == pytest.approx(1e3 * want, abs=0.051)
    assert "| best step ms | predicted ms |" in r.stdout


def test_benchmark_world_arguments():
    r = subprocess.run(
        [sys.executable, str(BENCH), "--world", "2", "--strategies", "tpdp"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "tpdp needs a 2 x 2 mesh: --world 4, got --world 2" in r.stderr


def test_docs_snippet_and_spec_section_run(capsys):
    import re

    import yaml

    text = (ROOT / "docs" / "experiments.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "parallel_cost" in b)
    exec(compile(code, "experiments.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["4718592.0", "0.2727"]
    assert [line.split()[0] for line in lines[2:]] == ["dp", "fsdp", "tp", "pp", "tpdp"]
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "model_parallel" in b)
    spec = load_spec({"projection": yaml.safe_load(block)["projection"]})
    assert spec["projection"]["model_parallel"]["layers"] == 8
