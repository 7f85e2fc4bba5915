"""The data-parallel character model (examples/ddp_char_lstm.py) learns, and resumes exactly.

Each run is a subprocess (its own local Ray, 2 workers, output under a temporary --out) with
small settings. A worker killed after the first checkpoint makes the Trainer restart the group;
training then goes on from ``get_checkpoint()`` and must end bitwise where an uninterrupted run
ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")

import ember  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "ddp_char_lstm.py"
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
needs_text = pytest.mark.skipif(not TEXT.is_file(), reason=f"needs {TEXT}")

SMALL = [
    "--workers",
    "2",
    "--epochs",
    "3",
    "--max-steps-per-epoch",
    "12",
    "--batch-size",
    "16",
    "--embed",
    "32",
    "--hidden",
    "64",
    "--eval-windows",
    "64",
    "--lr",
    "1e-2",
]
FINAL = re.compile(
    r"final validation loss ([\d.]+) nats after (\d+) epochs on 2 workers "
    r"\(unigram entropy ([\d.]+)"
)


def start(out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.pop("RAY_ADDRESS", None)  # always the run's own local Ray
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *SMALL, "--out", str(out), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        pytest.fail(f"ddp_char_lstm.py did not finish in {timeout} s:\n{out}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}"
    return out


def final_state(out: Path) -> dict:
    ckpts = sorted((out / "ddp_char_lstm").glob("checkpoint_*"))
    assert ckpts, f"no checkpoint under {out}"
    return ember.load(ckpts[-1] / "state.pt")


def assert_same(a, b, path: str = "state") -> None:
    """Bitwise equality of nested checkpoint structures."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, ember.Tensor):
        x, y = a.numpy(), b.numpy()
        assert x.dtype == y.dtype and x.shape == y.shape, path
        assert x.tobytes() == y.tobytes(), (
            f"{path} differs: max |diff| "
            f"{np.abs(x.astype(np.float64) - y.astype(np.float64)).max()}"
        )
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (this test's own subprocess tree only)."""
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        found += kids
        frontier += kids
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """One plain run: (its output, its final checkpoint state)."""
    if not TEXT.is_file():
        pytest.skip(f"needs {TEXT}")
    out = tmp_path_factory.mktemp("plain")
    return finish(start(out)), final_state(out)


def test_missing_text_file_is_named(tmp_path):
    missing = tmp_path / "no_such.txt"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(missing)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"text file not found: {missing}" in proc.stderr


@needs_text
def test_trains_below_unigram_entropy(uninterrupted):
    output, state = uninterrupted
    m = FINAL.search(output)
    assert m, output
    val, epochs, unigram = float(m[1]), int(m[2]), float(m[3])
    assert epochs == 3 and state["epoch"] == 2
    assert 3.0 < unigram < 3.6  # tinyshakespeare's character entropy, ~3.31 nats
    assert val < unigram - 0.2, output  # it learned more than the character frequencies


@needs_text
@pytest.mark.slow
def test_killed_worker_resumes_exactly_from_checkpoint(uninterrupted, tmp_path):
    proc = start(tmp_path)
    first = tmp_path / "ddp_char_lstm" / "checkpoint_000000"
    deadline = time.monotonic() + 180
    while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    workers = [p for p in descendants(proc.pid) if cmdline(p).startswith("ray::_Worker")]
    if not workers:
        proc.kill()
        pytest.fail(f"no Ray training worker found below the run:\n{proc.communicate()[0]}")
    os.kill(workers[-1], signal.SIGKILL)  # one worker dies in the middle of the 2nd epoch
    output = finish(proc)
    assert "restarting the group from Checkpoint" in output, output
    assert FINAL.search(output), output
    assert_same(final_state(tmp_path), uninterrupted[1])
