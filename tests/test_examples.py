"""The examples run as written, and resume exactly.

Each script runs in a subprocess (cwd = the repository, output into a temporary ``--out``) with
small settings. The resume tests stop ``digits_mlp.py`` (with ``--max-steps``: at an epoch's end
and in the middle of an epoch; and with a real Ctrl-C), continue it with ``--resume``, and
require the final checkpoint - model, optimizer, scheduler, RNG state, loader position,
counters - to be bitwise equal to that of a run that was never interrupted.
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

import ember

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TEXT = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
needs_text = pytest.mark.skipif(not TEXT.is_file(), reason=f"needs {TEXT}")

# Options that name the run rather than change what it computes.
RUN_CONTROL = {"out", "resume", "max_steps"}

# digits_mlp's settings are those of the uninterrupted run the resume tests compare with: one
# run (the ``mlp_run`` fixture) serves both.
MLP_ARGS = ["--epochs", "2", "--batch-size", "64", "--hidden", "64"]

SMALL = {
    "digits_mlp": MLP_ARGS,
    "digits_cnn": ["--epochs", "1", "--channels", "8", "--threads", "1"],
    "char_lstm": [
        "--epochs",
        "2",
        "--steps-per-epoch",
        "3",
        "--batch-size",
        "8",
        "--hidden",
        "32",
        "--eval-batches",
        "1",
        "--sample-chars",
        "10",
    ],
    "char_gpt": [
        "--epochs",
        "2",
        "--steps-per-epoch",
        "3",
        "--batch-size",
        "8",
        "--d-model",
        "32",
        "--warmup",
        "2",
        "--eval-batches",
        "1",
        "--sample-chars",
        "10",
    ],
}


# EMBER_PROGRESS=1 draws the progress bar although stderr is a pipe.
PROGRESS = {"EMBER_PROGRESS": "1"}


def run(script: str, *args, timeout: float = 120, env: dict | None = None):
    """Run ``examples/<script>.py`` from the repository root; returns the CompletedProcess."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{script}.py"), *map(str, args)],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(proc) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def assert_same(a, b, path: str = "checkpoint") -> None:
    """Bitwise equality of nested checkpoint structures (tensors: dtype, shape and bytes)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys differ"
        for k in a:
            assert_same(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{path}: {a!r} vs {b!r}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, ember.Tensor):
        assert isinstance(b, ember.Tensor), f"{path}: tensor vs {type(b).__name__}"
        assert a.dtype == b.dtype and a.shape == b.shape, (
            f"{path}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}"
        )
        assert np.array_equal(a.numpy(), b.numpy()), f"{path}: values differ"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"


def assert_same_run(a: dict, b: dict) -> None:
    """Everything but the options that only name the run must be equal."""
    assert_same(
        {k: v for k, v in a.items() if k != "args"}, {k: v for k, v in b.items() if k != "args"}
    )
    assert_same(
        {k: v for k, v in a["args"].items() if k not in RUN_CONTROL},
        {k: v for k, v in b["args"].items() if k not in RUN_CONTROL},
        "args",
    )


# ---- each example runs as written -----------------------------------------------------------
@pytest.mark.parametrize(
    "script",
    [
        "digits_mlp",
        "digits_cnn",
        pytest.param("char_lstm", marks=needs_text),
        pytest.param("char_gpt", marks=needs_text),
    ],
)
def test_example_runs(script, tmp_path, request):
    if script == "digits_mlp":
        proc, out = request.getfixturevalue("mlp_run")
    else:
        out = tmp_path / "run"
        proc = run(script, *SMALL[script], "--out", out, env=PROGRESS)
    stdout = ok(proc)
    epochs = int(SMALL[script][SMALL[script].index("--epochs") + 1])
    assert f"epoch {epochs}/{epochs}" in stdout
    assert f"epoch 1/{epochs}" in proc.stderr and "it/s" in proc.stderr  # the bar
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard event file"

    ckpt = ember.load(out / "checkpoint.pt")
    assert {
        "model",
        "optimizer",
        "scheduler",
        "rng",
        "loader",
        "epoch",
        "step",
        "args",
    } <= ckpt.keys()
    assert ckpt["epoch"] == epochs and ckpt["step"] > 0
    assert ckpt["loader"]["batches_served"] == 0  # saved at an epoch's end
    if script.startswith("digits"):
        acc = float(re.search(r"test accuracy ([\d.]+)%", stdout).group(1))
        assert 10.0 < acc <= 100.0  # a short run: better than chance, not more asked
    else:
        val = float(re.findall(r"val loss ([\d.]+)", stdout)[-1])
        assert 0 < val < 4.5  # ln(65) = 4.17 at random; a few steps barely move it
        assert "--- sample ---" in stdout


def test_missing_text_file_is_named(tmp_path):
    missing = tmp_path / "nope.txt"
    proc = run("char_lstm", "--data", missing, "--out", tmp_path / "run")
    assert proc.returncode == 2
    assert f"--data: text file not found: {missing}" in proc.stderr


def test_resume_without_checkpoint_is_an_error(tmp_path):
    proc = run("digits_mlp", "--resume", "--out", tmp_path / "empty")
    assert proc.returncode != 0
    assert f"no checkpoint at {tmp_path / 'empty' / 'checkpoint.pt'}" in proc.stderr


# ---- exact resumption -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """One uninterrupted ``digits_mlp`` run: (the CompletedProcess, its --out folder)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    return run("digits_mlp", *MLP_ARGS, "--out", out, env=PROGRESS), out


@pytest.fixture(scope="module")
def uninterrupted(mlp_run):
    proc, out = mlp_run
    ok(proc)
    return ember.load(out / "checkpoint.pt")


# A stop in the middle of the first epoch takes the same path as one in the middle of the
# second (a loader position restored within an epoch); it runs with EMBER_FULL_TESTS=1.
@pytest.mark.parametrize(
    "where",
    ["epoch_end", pytest.param("mid_first_epoch", marks=pytest.mark.full), "mid_second_epoch"],
)
def test_resume_is_bitwise_exact(uninterrupted, where, tmp_path):
    steps_per_epoch = uninterrupted["step"] // 2
    stop_at = {
        "epoch_end": steps_per_epoch,
        "mid_first_epoch": steps_per_epoch // 2,
        "mid_second_epoch": steps_per_epoch + 5,
    }[where]
    out = tmp_path / "run"
    stdout = ok(run("digits_mlp", *MLP_ARGS, "--max-steps", stop_at, "--out", out))
    assert f"stopped after step {stop_at}" in stdout
    stopped = ember.load(out / "checkpoint.pt")
    epoch, served = divmod(stop_at - 1, steps_per_epoch)  # the epoch in progress, 0-based
    assert stopped["step"] == stop_at and stopped["epoch"] == epoch
    assert stopped["loader"]["batches_served"] == served + 1
    with pytest.raises(AssertionError):  # it really is a partial run
        assert_same(stopped["model"], uninterrupted["model"])

    stdout = ok(run("digits_mlp", *MLP_ARGS, "--resume", "--out", out))
    assert f"at epoch {epoch + 1}, step {stop_at}" in stdout
    assert_same_run(ember.load(out / "checkpoint.pt"), uninterrupted)


def test_resume_with_workers_and_augmentation_is_exact(tmp_path):
    # digits_cnn shifts its images at random: with worker processes those draws happen there,
    # seeded per batch from the loader's saved base seed.
    args = ["--epochs", "2", "--channels", "8", "--num-workers", "2"]
    ok(run("digits_cnn", *args, "--out", tmp_path / "full"))
    full = ember.load(tmp_path / "full" / "checkpoint.pt")
    out = tmp_path / "run"
    ok(run("digits_cnn", *args, "--max-steps", full["step"] // 2 + 3, "--out", out))
    ok(run("digits_cnn", *args, "--resume", "--out", out))
    assert_same_run(ember.load(out / "checkpoint.pt"), full)


def test_ctrl_c_saves_and_resume_is_exact(tmp_path):
    # epochs enough that the run is still going when the signal arrives after the first one
    args = ["--epochs", "4", "--batch-size", "16", "--hidden", "64"]
    full = tmp_path / "full"
    ok(run("digits_mlp", *args, "--out", full))

    out = tmp_path / "interrupted"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "digits_mlp.py"), *args, "--out", str(out)],
        cwd=REPO,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.pt").exists():  # the end of epoch 1
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGINT, (stdout, stderr)
    assert "SIGINT: stopping after this step" in stderr
    stopped = ember.load(out / "checkpoint.pt")
    total = ember.load(full / "checkpoint.pt")["step"]
    assert 0 < stopped["step"] < total

    ok(run("digits_mlp", *args, "--resume", "--out", out))
    assert_same_run(ember.load(out / "checkpoint.pt"), ember.load(full / "checkpoint.pt"))


# ---- the snippet of docs/workflow.md ----------------------------------------------------------
def test_workflow_doc_snippet_runs_and_resumes(tmp_path):
    doc = (REPO / "docs" / "workflow.md").read_text()
    (tmp_path / "train.py").write_text(re.search(r"```python\n(.*?)```", doc, re.S).group(1))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

    def train():
        return ok(
            subprocess.run(
                [sys.executable, "train.py"],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
        )

    stdout = train()
    accuracies = [float(a) for a in re.findall(r"test accuracy ([\d.]+)", stdout)]
    assert len(accuracies) == 10 and accuracies[-1] >= 0.95, stdout
    path = tmp_path / "runs" / "workflow" / "checkpoint.pt"
    first = ember.load(path)
    assert first["epoch"] == 10
    assert list(path.parent.glob("events.out.tfevents.*"))

    stdout = train()  # finds the checkpoint of a finished run: restores it, trains no more
    assert "test accuracy" not in stdout
    assert_same(ember.load(path), first)
