"""The Trainer's live per-rank table: its rendering, and a real fit() drawing it."""

from __future__ import annotations

import io
import re

import pytest

from ember.distributed.train import RunConfig, ScalingConfig, Trainer, get_context, report
from ember.distributed.train.live import LiveTable


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rows_show_state_step_loss_and_ages():
    out = _Terminal()
    table = LiveTable(["10.0.0.1", "10.0.0.2"], stream=out, refresh=0.0)
    table.report(0, 1, {"loss": 0.5})
    table.report(1, 1, {"loss": 0.25, "acc": 1.0})
    table.report(0, 2, {"loss": 0.125})
    table.finished(1, ok=False)
    header, r0, r1 = table.render()
    assert header.split() == [
        "rank",
        "host",
        "state",
        "step",
        "loss",
        "step",
        "time",
        "last",
        "report",
    ]
    assert r0.split()[:5] == ["0", "10.0.0.1", "running", "2", "0.125"]
    assert r1.split()[:5] == ["1", "10.0.0.2", "failed", "1", "0.25"]
    assert re.fullmatch(r"\d+\.\ds", r0.split()[5])  # the time between rank 0's two reports
    # redrawn in place: each drawing after the first moves back over the previous one
    assert out.getvalue().count("\x1b[3F\x1b[J") == 3
    table.write("(ember trainer) a message")
    assert "a message\nrank" in out.getvalue()  # messages go above the table


def test_wanted_only_on_a_terminal():
    assert LiveTable.wanted(_Terminal()) and not LiveTable.wanted(io.StringIO())


def _loop():
    for step in range(3):
        report({"loss": 1.0 / (step + 1), "rank": get_context().get_world_rank()})


@pytest.mark.usefixtures("ray_session")
def test_fit_draws_the_table_on_a_terminal(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(LiveTable, "wanted", staticmethod(lambda stream=None: True))
    Trainer(
        _loop,
        scaling_config=ScalingConfig(num_workers=2),
        backend=None,
        run_config=RunConfig(storage_path=str(tmp_path), name="live"),
    ).fit()
    err = capsys.readouterr().err
    final = err.rsplit("\x1b[J", 1)[-1].strip().splitlines()  # the last drawing
    assert final[0].split()[:3] == ["rank", "host", "state"]
    assert [row.split()[2:5] for row in final[1:]] == [["done", "3", "0.3333"]] * 2
    assert "[iter " not in err  # no per-report lines under the table
