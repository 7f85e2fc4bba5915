"""Ray's own output kept out of a job's: to the run's ray.log always, to the terminal only with
``--verbose`` / ``EMBER_VERBOSE=1``. Routing checked on Ray's real logger and relay function;
then ``ember launch`` end to end (default in CI, ``--verbose`` in the full suite)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

pytest.importorskip("ray")

from ember.distributed.train._internal.ray_output import RayOutput, is_ray_line  # noqa: E402

_NOTICE = "Token authentication is enabled for this Ray cluster. Set RAY_AUTH_MODE=disabled"
_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


@pytest.fixture
def ray_terminal(capsys):
    """Ray's terminal handler writing to the captured stderr (it keeps the stream it was made
    with, which under pytest is the collection's capture)."""
    import ray  # noqa: F401 - sets Ray's logger up

    # Ray's own terminal handlers only: pytest 9 puts its log-capture handlers on the logger
    # too, and pointing those at capsys left pytest reading a closed stream
    handlers = [
        h
        for h in logging.getLogger("ray").handlers
        if hasattr(h, "setStream") and type(h).__module__.startswith("ray.")
    ]
    before = [h.stream for h in handlers]
    for h in handlers:
        h.stream = sys.stderr  # not setStream: it flushes the old one, which may be closed
    yield capsys
    for h, stream in zip(handlers, before):
        h.stream = stream


@pytest.mark.parametrize("verbose", [False, True])
def test_ray_logger_goes_to_the_file_and_to_the_terminal_only_when_verbose(
    tmp_path, ray_terminal, verbose
):
    log = tmp_path / "logs" / "ray.log"
    out = RayOutput(str(log), verbose=verbose).install()
    try:
        logging.getLogger(_AUTH_LOGGER).warning(_NOTICE)
        logging.getLogger("ray.tune").error("a Ray error")
    finally:
        out.close()
    err = ray_terminal.readouterr().err
    assert (_NOTICE in err) == verbose
    assert "a Ray error" in err  # errors still reach the terminal
    text = log.read_text()
    assert "WARNING" in text and _NOTICE in text and "a Ray error" in text
    # closed: Ray's logger prints as before, nothing more goes to the file
    logging.getLogger(_AUTH_LOGGER).warning("after close")
    assert "after close" in ray_terminal.readouterr().err
    assert "after close" not in log.read_text()


def test_env_var_turns_verbose_on(monkeypatch, tmp_path):
    monkeypatch.setenv("EMBER_VERBOSE", "1")
    assert RayOutput(str(tmp_path / "r.log")).verbose
    monkeypatch.setenv("EMBER_VERBOSE", "0")
    assert not RayOutput(str(tmp_path / "r.log")).verbose
    assert RayOutput(str(tmp_path / "r.log"), verbose=True).verbose


@pytest.mark.parametrize(
    "line, ray",
    [
        ("2026-12-05 12:56:15,046\tWARNING worker.py:85 -- a Ray warning", True),
        ("[2026-12-05 12:57:04,754 W 1234 5678] core_worker.cc:123: C++ core", True),
        ("[mutex.cc : 452] RAW: Lock blocking 0x5631b0610ea0   @ 0x7fc5a522b1a2", True),
        ("[rank0]: epoch  1/10  loss 0.7041  test accuracy 0.903", False),
        ("2026-12-05 a user line with a date", False),
    ],
)
def test_ray_log_formats_are_recognised(line, ray):
    assert is_ray_line(line) is ray


@pytest.mark.parametrize("verbose", [False, True])
def test_relay_keeps_system_lines_and_passes_the_jobs(tmp_path, verbose):
    log = tmp_path / "ray.log"
    out = RayOutput(str(log), verbose=verbose)
    shown: list[list[str]] = []
    out._relay = lambda data: shown.append(list(data["lines"]))  # Ray's relay, as a stand-in
    raylet = {"pid": "raylet", "lines": ["A worker died or was killed"], "is_err": True}
    worker = {
        "pid": 4242,
        "lines": ["user line", "2026-12-05 12:56:15,046\tWARNING worker.py:85 -- from Ray"],
        "is_err": True,
    }
    out._relay_data(raylet)
    out._relay_data(worker)
    out.close()
    text = log.read_text()
    assert "(raylet) A worker died" in text and "(pid=4242) 2026-12-05" in text
    assert "user line" not in text
    if verbose:
        assert shown == [raylet["lines"], worker["lines"]]
    else:
        assert shown == [["user line"]]


def _launch(tmp_path, *flags) -> subprocess.CompletedProcess:
    script = tmp_path / "job.py"
    script.write_text("import os\nprint('job line from rank', os.environ['RANK'])\n")
    return subprocess.run(
        [sys.executable, "-m", "ember.launcher.cli", "launch", "--workers", "1"]
        + ["--log-dir", str(tmp_path / "logs"), *flags, str(script)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("flags", [(), pytest.param(("--verbose",), marks=pytest.mark.full)])
def test_launch_output_has_ray_lines_only_with_verbose(tmp_path, flags):
    r = _launch(tmp_path, *flags)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[rank0]: job line from rank 0" in r.stdout
    shown = r.stdout + r.stderr
    ray_lines = [line for line in shown.splitlines() if is_ray_line(line) or "opt out" in line]
    # Whether Ray prints anything at all (its token notice) depends on the machine's Ray auth
    # state, so this checks the routing, not Ray: nothing of Ray's is shown without --verbose,
    # what is shown with it is also kept in the log, and the job's own lines never go there.
    # (The routing itself is checked line by line above.)
    if not flags:
        assert not ray_lines, shown
    log = tmp_path / "logs" / "ray.log"
    kept = log.read_text() if log.exists() else ""
    assert "job line from rank" not in kept
    if any("opt out" in line for line in ray_lines):
        assert "opt out" in kept
