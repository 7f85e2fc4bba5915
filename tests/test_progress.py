"""ember.utils.progress: a tqdm bar that hides itself when it would only add noise."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

import ember
from ember.utils.progress import Progress, progress, progress_enabled


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("EMBER_PROGRESS", raising=False)
    monkeypatch.delenv("RANK", raising=False)


def test_shown_on_a_terminal_with_live_metrics():
    out = _Terminal()
    with progress(range(5), desc="epoch 1", file=out, mininterval=0) as bar:
        assert not bar.disabled and len(bar) == 5
        seen = []
        for i in bar:
            seen.append(i)
            bar.set_metrics(
                loss=ember.tensor(0.5, requires_grad=True) * 1,
                step=i,
                acc=np.float32(0.25),
                phase="train",
            )
    assert seen == [0, 1, 2, 3, 4]
    text = out.getvalue()
    assert "epoch 1" in text and "5/5" in text
    assert "loss=0.5" in text and "acc=0.25" in text and "step=4" in text and "phase=train" in text
    assert bar.metrics == {"loss": 0.5, "step": 4, "acc": 0.25, "phase": "train"}


def test_hidden_when_not_a_terminal():
    out = io.StringIO()
    bar = progress([1, 2, 3], desc="quiet", file=out)
    assert bar.disabled
    assert list(bar) == [1, 2, 3]
    bar.set_metrics(loss=ember.tensor(1.5))
    bar.close()
    assert out.getvalue() == ""
    assert bar.n == 3 and bar.total == 3 and bar.metrics == {"loss": 1.5}


@pytest.mark.parametrize(
    "env,value,shown",
    [
        ("EMBER_PROGRESS", "0", False),
        ("EMBER_PROGRESS", "off", False),
        ("RANK", "1", False),
        ("RANK", "0", True),
        ("EMBER_PROGRESS", "1", True),
    ],
)
def test_environment_controls(monkeypatch, env, value, shown):
    monkeypatch.setenv(env, value)
    assert progress_enabled(_Terminal()) is shown


def test_forced_on_without_terminal_and_explicit_disable(monkeypatch):
    monkeypatch.setenv("EMBER_PROGRESS", "1")
    out = io.StringIO()
    for _ in progress(range(3), desc="forced", file=out):
        pass
    assert "forced" in out.getvalue()
    out = _Terminal()
    for _ in progress(range(3), file=out, disable=True):
        pass
    assert out.getvalue() == ""


def test_manual_bar_and_write():
    out = _Terminal()
    with Progress(total=10, desc="steps", file=out, mininterval=0) as bar:
        bar.update(4, loss=2.0)
        bar.update(6)
        bar.write("checkpoint saved")
    assert bar.n == 10
    assert "checkpoint saved" in out.getvalue() and "10/10" in out.getvalue()
    hidden = io.StringIO()
    with Progress(total=3, file=hidden) as quiet:
        quiet.update(2)
        quiet.write("plain line")
    assert quiet.n == 2 and hidden.getvalue() == "plain line\n"


def test_unsized_iterables():
    bar = progress((i for i in range(4)), file=_Terminal())
    assert list(bar) == [0, 1, 2, 3] and bar.total is None
    with pytest.raises(TypeError, match="no length"):
        len(bar)
    assert len(progress(range(7), disable=True)) == 7
    assert len(progress((i for i in range(7)), total=7, disable=True)) == 7


def test_metrics_keep_no_graph_and_many_elements_show_plainly():
    x = ember.ones(3, requires_grad=True)
    bar = progress(range(1), disable=True)
    bar.set_metrics(loss=(x * 2).sum(), vec=ember.arange(3))
    m = bar.metrics
    assert m["loss"] == 6.0 and isinstance(m["vec"], ember.Tensor)
    assert bar._metrics["loss"].grad_fn is None  # detached: holds no graph alive


def test_hidden_bar_overhead_is_small():
    n = 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        pass
    base = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in progress(range(n), disable=True):
        pass
    wrapped = time.perf_counter() - t0
    assert wrapped - base < 0.5  # well under 2.5 us per step on a loaded 2-core machine
