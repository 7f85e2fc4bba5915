"""Workers SIGKILLed at random points of one Trainer run, shared by tests/chaos/test_train_kill.py
and ``benchmarks/chaos.py``.

The training loop, the run and the weights come from tests/train/test_recovery.py (2 workers, a
checkpoint every epoch, resumed with ``get_checkpoint`` and ``sampler.set_epoch``): here the
kills are drawn at random (seeded) over the run's batches and there are three of them. The
outcome: the reported epochs, whether the final weights are bitwise equal to an uninterrupted
run's, the extra wall time per kill, and what the run left behind: ``/dev/shm`` files of ember's
runtime whose creator is gone, and temp files in the run directory.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "train"))
import test_recovery  # noqa: E402

__all__ = ["TrainKillOutcome", "draw_kills", "run_trainer_kills", "shm_files", "leaked_shm"]

EPOCHS, BATCHES = 4, 6  # test_recovery's loop: 96 samples, batch 8, 2 workers
_SHM = "/dev/shm"
_SHM_NAME = re.compile(r"^ember-(?:arena-)?(\d+)-")


def shm_files() -> dict[str, int]:
    """ember's runtime files in /dev/shm and their allocated bytes."""
    out = {}
    for name in os.listdir(_SHM):
        if _SHM_NAME.match(name):
            try:
                out[name] = os.stat(os.path.join(_SHM, name)).st_blocks * 512
            except OSError:
                pass
    return out


def leaked_shm(before: dict[str, int]) -> int:
    """Bytes of ember files in /dev/shm made since ``before`` whose creator is no longer
    running (files of live processes, e.g. other jobs on the machine, are not leaks)."""
    from ember._tempfiles import pid_alive

    total = 0
    for name, size in shm_files().items():
        if name not in before and not pid_alive(int(_SHM_NAME.match(name).group(1))):
            total += size
    return total


def draw_kills(kills: int, seed: int) -> list[tuple[int, int]]:
    """``kills`` distinct (epoch, batch) points at random, in order."""
    rng = np.random.default_rng(seed)
    points = rng.choice(EPOCHS * BATCHES, size=kills, replace=False)
    return sorted((int(p) // BATCHES, int(p) % BATCHES) for p in points)


@dataclass
class TrainKillOutcome:
    kill_at: list[tuple[int, int]]
    epochs: list[int] = field(default_factory=list)  # the epochs reported by the killed run
    error: str | None = None
    bitwise_equal: bool = False
    clean_s: float = 0.0
    killed_s: float = 0.0
    leaked_bytes: int = 0
    stray_files: list[str] = field(default_factory=list)

    @property
    def survived(self) -> bool:
        return self.error is None and self.bitwise_equal

    @property
    def per_kill_s(self) -> float:
        """Wall time each kill added (the restart and the work redone)."""
        return (self.killed_s - self.clean_s) / max(1, len(self.kill_at))


def run_trainer_kills(kills: int = 3, seed: int = 0, workdir: str | None = None):
    """An uninterrupted run, then the same run with ``kills`` SIGKILLs of rank 1 at random
    batches (``max_failures=kills``); Ray must be running or startable."""
    from ray import cloudpickle  # Ray ships the loop with its own copy of cloudpickle

    # the loop travels by value: Ray's workers need not import the test module
    cloudpickle.register_pickle_by_value(test_recovery)
    out = TrainKillOutcome(draw_kills(kills, seed))
    own = workdir is None
    root = pathlib.Path(workdir or tempfile.mkdtemp(prefix="ember-trainkill-"))
    try:
        return _run(out, root, kills)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)


def _run(out: TrainKillOutcome, root: pathlib.Path, kills: int) -> TrainKillOutcome:
    shm_before = shm_files()
    t0 = time.monotonic()
    clean = test_recovery._fit(root, "clean", [], 0, set_epoch=True)
    out.clean_s = time.monotonic() - t0
    t0 = time.monotonic()
    try:
        killed = test_recovery._fit(root, "killed", out.kill_at, kills, set_epoch=True)
    except Exception as e:
        out.error = f"{type(e).__name__}: {e}"
    else:
        out.killed_s = time.monotonic() - t0
        out.epochs = [m["epoch"] for m in killed.metrics_history]
        want, got = test_recovery._final_weights(clean), test_recovery._final_weights(killed)
        out.bitwise_equal = sorted(want) == sorted(got) and all(
            np.array_equal(got[k], want[k]) and got[k].dtype == want[k].dtype for k in want
        )
    out.leaked_bytes = leaked_shm(shm_before)
    run = root / "killed"
    # temp files and directories of interrupted writes (atomic writes use dot names)
    out.stray_files = sorted(
        str(p.relative_to(run)) for p in run.rglob(".*") if not p.name.startswith(".nfs")
    )
    return out
