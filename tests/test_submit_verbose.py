"""``ember submit`` / ``ember job logs``: Ray's own lines in a job's output go to LOG_DIR/ray.log
and to the terminal only with ``--verbose``. The lines are made by Ray's own relay printer;
the end-to-end runs on a real Ray Jobs server are in tests/test_submit.py (its cluster)."""

from __future__ import annotations

import io

import pytest

pytest.importorskip("ray")

from ember.distributed.train._internal.ray_output import RayOutput  # noqa: E402
from ember.launcher._ray_output import JobOutput, is_ray_job_line  # noqa: E402
from ember.launcher.cli import build_parser  # noqa: E402

_RAY_FMT = "2026-12-05 12:56:15,046\tWARNING worker.py:85 -- a Ray warning"


def _relayed(monkeypatch, color: str) -> list[str]:
    """Lines as a job's ``ray.init`` driver prints what Ray relays to it (Ray's printer)."""
    from ray._private.worker import print_worker_logs

    monkeypatch.setenv("RAY_COLOR_PREFIX", color)
    buf = io.StringIO()
    here = {"ip": "10.0.0.1", "localhost": "10.0.0.1"}
    print_worker_logs({**here, "pid": "raylet", "lines": ["A worker died"]}, buf)
    task = {"pid": 123, "ip": "10.0.0.2", "task_name": "f", "lines": ["job says hi", _RAY_FMT]}
    print_worker_logs({**here, **task}, buf)
    print_worker_logs({**here, "pid": 124, "actor_name": "A", "lines": ["(rank 0) step 1"]}, buf)
    return buf.getvalue().splitlines()


@pytest.mark.parametrize("color", ["1", "0"])
def test_relayed_lines_are_told_apart(monkeypatch, color):
    lines = _relayed(monkeypatch, color)
    assert [is_ray_job_line(line) for line in lines] == [True, False, True, False], lines


@pytest.mark.parametrize(
    "line, ray",
    [
        (_RAY_FMT, True),
        ("(autoscaler +3s) Adding 1 node(s) of type ray.worker.default.", True),
        ("(raylet, ip=10.0.0.2) Spilled 120 MiB, 3 objects", True),
        ("(rank 0) job line in parentheses", False),
        ("[rank0]: epoch  1/2  loss 0.7041  test accuracy 0.903", False),
        ("", False),
    ],
)
def test_job_line_formats(line, ray):
    assert is_ray_job_line(line) is ray


@pytest.mark.parametrize("verbose", [False, True])
def test_job_output_splits_chunks_by_line(tmp_path, verbose):
    log = tmp_path / "logs" / "ray.log"
    ray_out = RayOutput(str(log), verbose=verbose)
    term = io.StringIO()
    out = JobOutput(ray_out, sink=term)
    text = f"job line 1\n{_RAY_FMT}\n(raylet) A worker died\njob line 2\nno newline at the end"
    for i in range(0, len(text), 7):  # chunks that cut lines, as a log stream does
        out.write(text[i : i + 7])
    assert "no newline" not in term.getvalue()  # a partial line waits for its end
    out.flush()
    ray_out.close()
    shown = term.getvalue().splitlines()
    job = ["job line 1", "job line 2", "no newline at the end"]
    if verbose:
        assert shown == text.splitlines()
    else:
        assert shown == job
    assert log.read_text().splitlines() == [_RAY_FMT, "(raylet) A worker died"]


@pytest.mark.parametrize(
    "argv",
    [
        ["submit", "--verbose", "--log-dir", "d", "--", "python", "x.py"],
        ["job", "logs", "-v", "--log-dir", "d", "ID"],
        ["job", "status", "--verbose", "ID"],
        ["job", "stop", "-v", "ID"],
        ["job", "list", "--log-dir", "d"],
    ],
)
def test_every_submit_and_job_action_takes_the_flags(argv):
    args = build_parser().parse_args(argv)
    assert args.verbose == ("-v" in argv or "--verbose" in argv)
    assert args.log_dir == ("d" if "--log-dir" in argv else None)
