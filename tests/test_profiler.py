"""ember.profiler: per-op events, ranges, shapes, memory, tables, Chrome traces (schema-checked),
schedules (against torch's), trace handlers, the legacy autograd spelling, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import ember
from ember.autograd.function import Function
from ember.profiler import (
    ProfilerAction,
    ProfilerActivity,
    profile,
    record_function,
    schedule,
    tensorboard_trace_handler,
)

# What Perfetto / chrome://tracing need of a JSON trace (Trace Event Format).
TRACE_SCHEMA = {
    "type": "object",
    "required": ["traceEvents"],
    "properties": {
        "displayTimeUnit": {"enum": ["ms", "ns"]},
        "traceEvents": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["ph", "name", "pid", "tid"],
                "properties": {
                    "ph": {"enum": ["X", "B", "E", "i", "I", "M", "C"]},
                    "name": {"type": "string"},
                    "pid": {"type": ["integer", "string"]},
                    "tid": {"type": ["integer", "string"]},
                    "ts": {"type": "number"},
                    "dur": {"type": "number", "minimum": 0},
                    "args": {"type": "object"},
                },
                "allOf": [
                    {
                        "if": {"properties": {"ph": {"const": "X"}}},
                        "then": {"required": ["ts", "dur"]},
                    },
                    {"if": {"properties": {"ph": {"const": "i"}}}, "then": {"required": ["ts"]}},
                ],
            },
        },
    },
}


def _train_step(model, x):
    with record_function("forward"):
        loss = model(x).relu().sum()
    loss.backward()


@pytest.fixture
def model():
    ember.manual_seed(0)
    return ember.nn.Sequential(ember.nn.Linear(8, 16), ember.nn.Linear(16, 4))


def test_ops_ranges_shapes_memory(model):
    x = ember.randn(5, 8)
    with profile(
        activities=[ProfilerActivity.CPU], record_shapes=True, profile_memory=True
    ) as prof:
        _train_step(model, x)
        _ = x > 0  # a no-grad op
    avg = {e.key: e for e in prof.key_averages()}
    assert avg["ember::linear"].count == 2
    assert avg["ember::relu"].count == 1
    assert avg["ember::greater"].count == 1
    assert avg["autograd::engine::evaluate_function: LinearBackward0"].count == 2
    # output bytes: relu's output is 5x4 float32
    assert avg["ember::relu"].cpu_memory_usage == 5 * 4 * 4
    shapes = {
        str(e.input_shapes)
        for e in prof.key_averages(group_by_input_shape=True)
        if e.key == "ember::linear"
    }
    assert shapes == {"[[5, 8], [16, 8], [16]]", "[[5, 16], [4, 16], [4]]"}
    # nesting: the ops of the forward are children of the "forward" range
    events = prof.events()
    fwd = next(e for e in events if e.name == "forward")
    assert fwd.is_user_annotation
    child_names = {c.name for c in fwd.cpu_children}
    assert {"ember::linear", "ember::relu", "ember::sum"} <= child_names
    assert 0 <= fwd.self_cpu_time_total <= fwd.cpu_time_total
    assert fwd.cpu_time_total >= sum(c.cpu_time_total for c in fwd.cpu_children)


def test_table_layout_and_sorting(model):
    x = ember.randn(5, 8)
    with profile(profile_memory=True) as prof:
        for _ in range(3):
            _train_step(model, x)
    table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=4)
    lines = table.strip().splitlines()
    assert lines[1].split() == [
        "Name",
        "Self",
        "CPU",
        "%",
        "Self",
        "CPU",
        "CPU",
        "total",
        "%",
        "CPU",
        "total",
        "CPU",
        "time",
        "avg",
        "CPU",
        "Mem",
        "Self",
        "CPU",
        "Mem",
        "#",
        "of",
        "Calls",
    ]
    assert lines[0] == lines[2] == lines[-2] and set(lines[0]) == {"-", " "}
    assert lines[-1].startswith("Self CPU time total: ")
    rows = lines[3:-2]
    assert len(rows) == 4
    assert rows[0].split()[0] == "forward" and rows[0].split()[-1] == "3"
    totals = sorted((e.cpu_time_total for e in prof.key_averages()), reverse=True)[:4]
    got = [
        e.cpu_time_total
        for e in sorted(prof.key_averages(), key=lambda e: e.cpu_time_total, reverse=True)[:4]
    ]
    assert got == totals
    with pytest.raises(ValueError, match="unknown sort_by 'bogus'"):
        prof.key_averages().table(sort_by="bogus")


def test_chrome_trace_is_valid(model, tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    x = ember.randn(5, 8)
    with profile(record_shapes=True, profile_memory=True, with_stack=True) as prof:
        _train_step(model, x)
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    doc = json.loads(path.read_text())
    jsonschema.validate(doc, TRACE_SCHEMA)
    complete = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == len(prof.events())
    fwd = next(e for e in complete if e["name"] == "forward")
    lin = [e for e in complete if e["name"] == "ember::linear"]
    assert len(lin) == 2 and lin[0]["args"]["Input Dims"] == [[5, 8], [16, 8], [16]]
    for e in lin:  # contained in the range, on the same thread: Perfetto nests them
        assert e["tid"] == fwd["tid"]
        assert fwd["ts"] <= e["ts"] and e["ts"] + e["dur"] <= fwd["ts"] + fwd["dur"] + 1e-3
    assert "test_profiler.py" in lin[0]["args"]["Call stack"]
    assert any(e["ph"] == "i" and e["name"] == "[memory]" for e in doc["traceEvents"])


@pytest.mark.parametrize(
    "kw",
    [
        dict(wait=1, warmup=1, active=2),
        dict(wait=1, warmup=1, active=2, repeat=2, skip_first=1),
        dict(wait=2, warmup=0, active=1, repeat=1, skip_first_wait=1),
    ],
)
def test_schedule_matches_torch(kw):
    torch = pytest.importorskip("torch")
    ts = torch.profiler.schedule(**kw)
    es = schedule(**kw)
    assert [es(i).name for i in range(14)] == [ts(i).name for i in range(14)]


def test_schedule_cycles_and_trace_handler(model, tmp_path):
    x = ember.randn(5, 8)
    seen = []
    handler = tensorboard_trace_handler(str(tmp_path), worker_name="w0")

    def ready(prof):
        seen.append(
            (
                prof.step_num,
                sorted({e.name for e in prof.events() if e.name.startswith("ProfilerStep")}),
            )
        )
        handler(prof)

    sched = schedule(wait=1, warmup=1, active=2, repeat=2)
    with profile(schedule=sched, on_trace_ready=ready) as prof:
        for _ in range(10):
            _train_step(model, x)
            prof.step()
    assert seen == [
        (4, ["ProfilerStep#2", "ProfilerStep#3"]),
        (8, ["ProfilerStep#6", "ProfilerStep#7"]),
    ]
    files = sorted(os.listdir(tmp_path))
    assert len(files) == 2 and all(
        f.startswith("w0.") and f.endswith(".pt.trace.json") for f in files
    )
    doc = json.loads((tmp_path / files[0]).read_text())
    assert any(e["name"] == "ember::linear" for e in doc["traceEvents"])


def test_hooks_are_removed_and_cost_nothing_after(model):
    before = Function.__dict__["apply"]
    from ember.autograd import engine

    call_backward = engine._call_backward
    with profile():
        assert Function.__dict__["apply"] is not before
        _train_step(model, ember.randn(2, 8))
    assert Function.__dict__["apply"] is before
    assert engine._call_backward is call_backward
    from ember.ops import function_free

    assert function_free._profile_hook[0] is None


def test_legacy_autograd_profiler_and_decorator():
    @record_function("my_block")
    def block(t):
        return (t * 2).exp()

    x = ember.randn(3, 3, requires_grad=True)
    with ember.autograd.profiler.profile(record_shapes=True) as prof:
        with ember.autograd.profiler.record_function("outer"):
            block(x).sum().backward()
    names = {e.key for e in prof.key_averages()}
    assert {
        "outer",
        "my_block",
        "ember::mul",
        "ember::exp",
        "autograd::engine::evaluate_function: ExpBackward0",
    } <= names
    assert "my_block" in prof.table()
    np.testing.assert_allclose(
        prof.self_cpu_time_total, sum(e.self_cpu_time_total for e in prof.function_events)
    )


def test_bad_input():
    with pytest.raises(TypeError, match="ProfilerActivity"):
        profile(activities=["cpu"])
    with pytest.raises(ValueError, match="active must be a positive int"):
        schedule(wait=0, warmup=0, active=0)
    with pytest.raises(TypeError, match="name must be a str"):
        record_function(3)
    with profile() as outer:
        with pytest.raises(RuntimeError, match="already enabled"):
            with profile():
                pass
    with pytest.raises(ValueError, match="record_shapes=True"):
        outer.key_averages(group_by_input_shape=True)
    with pytest.raises(RuntimeError, match="didn't finish"):
        profile().events()
    assert ProfilerAction.RECORD_AND_SAVE.value == 3
