"""``ember.utils.benchmark`` (``torch.utils.benchmark``'s Timer/Measurement/Compare): the
statistics equal torch's for the same block times, timing runs the statement with the given
globals and thread count, and Compare lays results out by label, sub_label and description."""

from __future__ import annotations

import re

import numpy as np
import pytest

import ember
from ember.utils import benchmark

torch = pytest.importorskip("torch")


def test_measurement_statistics_equal_torchs():
    from torch.utils.benchmark.utils.common import Measurement, TaskSpec

    raw = list(np.random.default_rng(0).uniform(0.5, 2.0, 11))
    ours = benchmark.Measurement(10, raw, benchmark.Timer("x")._spec)
    theirs = Measurement(number_per_run=10, raw_times=raw, task_spec=TaskSpec("x", "pass"))
    for stat in ("median", "mean", "iqr"):
        assert getattr(ours, stat) == pytest.approx(getattr(theirs, stat), rel=1e-12), stat
    assert ours.times == pytest.approx(theirs.times)


def test_timer_runs_the_statement_with_globals_and_threads():
    calls = []
    x = ember.ones(8)

    def work():
        calls.append(ember.get_num_threads())
        return x.sum()

    before = ember.get_num_threads()
    t = benchmark.Timer("work()", globals={"work": work}, num_threads=1, label="sum")
    m = t.timeit(5)
    assert m.number_per_run == 5 and len(m.times) == 1 and len(calls) == 6  # + the warm-up
    assert set(calls) == {1} and ember.get_num_threads() == before
    auto = benchmark.Timer(work).blocked_autorange(min_run_time=0.05)
    assert sum(auto.raw_times) >= 0.05 and auto.median > 0
    assert auto.raw_times[0] >= 1e-3  # blocks sized to take at least 1 ms
    text = repr(auto)
    assert "Median:" in text and "runs per measurement, 1 thread" in text
    adaptive = benchmark.Timer("sum(range(50))").adaptive_autorange(max_run_time=0.5)
    assert len(adaptive.times) >= 3 or sum(adaptive.raw_times) >= 0.5
    with pytest.raises(ValueError, match="num_threads"):
        benchmark.Timer("pass", num_threads=0)


def test_compare_tables_by_label_row_and_column(capsys):
    results = [
        benchmark.Timer(
            "sum(range(n))", globals={"n": n}, label="sum", sub_label=f"n={n}", description=d
        ).timeit(20)
        for n in (10, 1000)
        for d in ("a", "b")
    ]
    cmp = benchmark.Compare(results)
    cmp.trim_significant_figures()
    cmp.print()
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    # PyTorch's layout: title, columns, a section per thread count, rows, the unit
    assert lines[0].startswith("[--") and " sum " in lines[0]
    assert re.fullmatch(r"Times are in \w+seconds \((ns|us|ms)\)\.", lines[-1])
    assert "e+" not in out  # 3 significant figures without exponents, as PyTorch
    assert lines[1].split("|")[1].strip() == "a" and lines[1].split("|")[2].strip() == "b"
    assert lines[2].startswith("1 threads: ---")
    assert lines[3].strip().startswith("n=10 ") and lines[4].strip().startswith("n=1000")
