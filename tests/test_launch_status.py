"""ember launch's live table: progress read from output lines, lines kept above the table."""

from __future__ import annotations

import io

import pytest

from ember.launcher._live_status import LaunchStatus, parse_progress
from ember.launcher._worker_io import Printer


@pytest.mark.parametrize(
    "text, want",
    [
        ("epoch  3/10  loss 0.1234  test accuracy 0.95", (3, 0.1234)),
        ("step=120 loss: 2.5e-3", (120, 0.0025)),
        ("iteration 7", (7, None)),
        ("train loss .5", (None, 0.5)),
        ("test accuracy 0.97 (2 workers, 10 epochs)", (None, None)),
    ],
)
def test_progress_is_read_from_lines(text, want):
    assert parse_progress(text) == want


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_go_above_the_table(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    monkeypatch.setattr("sys.stdout", term)
    status = LaunchStatus(["10.0.0.1", "10.0.0.2"])
    printer = Printer(status)
    printer.write(0, "out", "epoch 1/2  loss 0.5\n")
    printer.write(1, "out", "epoch 1/2  loss 0.25\n")
    printer.write(0, "err", "epochs:  50%|#####     | 1/2\r")  # a bar's state: not written
    status.finished(1, 0)
    status.close()
    screen = term.getvalue()
    assert "[rank0]: epoch 1/2  loss 0.5\n" in screen and "| 1/2" not in screen
    final = screen.rsplit("\x1b[J", 1)[-1].splitlines()
    assert [row.split()[:5] for row in final[1:]] == [
        ["0", "10.0.0.1", "running", "1", "0.5"],
        ["1", "10.0.0.2", "done", "1", "0.25"],
    ]


def test_job_status_table_reads_the_job_log():
    from ember.launcher._live_status import table_from_log

    log = (
        "starting\n[rank0]: epoch 1/3  loss 0.9\n[rank1]: epoch 1/3  loss 0.8\n"
        "[rank0]: epoch 2/3  loss 0.5\n[rank1]: a line without progress\n"
    )
    header, r0, r1 = table_from_log(log, "RUNNING")
    assert header.split()[:5] == ["rank", "host", "state", "step", "loss"]
    assert r0.split()[:5] == ["0", "-", "running", "2", "0.5"]
    assert r1.split()[:5] == ["1", "-", "running", "1", "0.8"]
    trainer = "(ember trainer) [iter 4] epoch=3  loss=0.125  test_acc=0.9\n"
    assert table_from_log(trainer, "SUCCEEDED")[1].split()[:5] == [
        "0",
        "-",
        "succeeded",
        "4",
        "0.125",
    ]
    assert table_from_log("no progress here\n", "RUNNING") == []
