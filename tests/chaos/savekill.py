"""SIGKILL in the middle of ``ember.save``, shared by tests/chaos/test_save_kill.py and
``benchmarks/chaos.py``.

A forked process saves a large state dict over the previous version of the file and is
SIGKILLed at a random point of the save (uniform over the time an uninterrupted save takes),
``kills`` times in a row. After each kill the file must load, bit for bit, as the last version
whose save finished; the temp files of killed writers may stay until the next save into the
directory, which must remove them all. Reports the kills that hit a save in progress (a temp
file was left), the versions seen, and the bytes left besides the file after the next save.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["SaveKillOutcome", "run_save_kills"]


@dataclass
class SaveKillOutcome:
    kills: int
    size_mb: int
    save_s: float = 0.0  # one uninterrupted save
    mid_save: int = 0  # kills that left a temp file (the save was in progress)
    unloadable: int = 0  # kills after which the file did not load as a finished version
    stale_after_kills: int = 0  # temp bytes left by the killed writers before the next save
    leaked_bytes: int = 0  # bytes besides the file after the next successful save
    versions: list[int] = field(default_factory=list)  # the version loaded after each kill
    errors: list[str] = field(default_factory=list)

    @property
    def survived(self) -> bool:
        return self.unloadable == 0 and self.leaked_bytes == 0


def _state(version: int, size_mb: int) -> dict:
    import ember

    n = size_mb * (1 << 20) // 4 // 8
    return {f"layer{i}.weight": ember.full((n,), float(version)) for i in range(8)} | {
        "version": version
    }


def _version_of(path: str, size_mb: int) -> int:
    """The version stored in ``path``, checked bit for bit against what that version wrote."""
    import ember

    state = ember.load(path)
    v = state["version"]
    want = _state(v, size_mb)
    for k, t in want.items():
        if k != "version" and not np.array_equal(state[k].numpy(), t.numpy()):
            raise AssertionError(f"{k} of version {v} differs from what was saved")
    return v


def _save_in_child(path: str, version: int, size_mb: int) -> int:
    """Fork a process that builds the state and saves it; returns its pid. The child writes
    one byte on a pipe just before ``ember.save`` so the kill lands inside the save."""
    state = _state(version, size_mb)  # built before the fork: the child only saves
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller's code
        try:
            import ember

            os.close(r)
            os.write(w, b"s")
            ember.save(state, path)
            os._exit(0)
        except BaseException:
            os._exit(1)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    return pid


def _dir_bytes(directory: str, skip: str) -> int:
    """Bytes of everything in ``directory`` (recursively) but the file ``skip``."""
    total = 0
    for root, dirs, files in os.walk(directory):
        for name in files + dirs:
            if root == directory and name == skip:
                continue
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def _temp_names(directory: str) -> list[str]:
    return [n for n in os.listdir(directory) if n.startswith(".")]


def _wait_for_bytes(directory: str, old: set[str], timeout: float = 30.0) -> None:
    """Until the temp directory of a new save (not in ``old``) holds a file with data."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name in set(_temp_names(directory)) - old:
            with contextlib.suppress(OSError):
                for root, _dirs, files in os.walk(os.path.join(directory, name)):
                    if any(os.path.getsize(os.path.join(root, f)) > 0 for f in files):
                        return
        time.sleep(0.002)
    raise TimeoutError(f"no save in progress appeared in {directory} within {timeout} s")


def run_save_kills(
    kills: int = 3, size_mb: int = 32, seed: int = 0, when: str = "random"
) -> SaveKillOutcome:
    """Save version 0 cleanly, then try versions 1..kills, each SIGKILLed during its save,
    then save version ``kills + 1`` cleanly; report what was left. ``when``: ``"random"`` (a
    uniform point of an uninterrupted save's duration) or ``"writing"`` (as soon as the
    file being written holds data: always mid-write)."""
    if when not in ("random", "writing"):
        raise ValueError(f"when must be 'random' or 'writing', got {when!r}")
    import ember

    if kills < 1 or size_mb < 1:
        raise ValueError(f"kills and size_mb must be positive, got {kills} and {size_mb}")
    out = SaveKillOutcome(kills, size_mb)
    rng = np.random.default_rng(seed)
    d = tempfile.mkdtemp(prefix="ember-savekill-")
    path = os.path.join(d, "model.pt")
    try:
        t0 = time.monotonic()
        ember.save(_state(0, size_mb), path)
        out.save_s = time.monotonic() - t0
        done = 0  # the last version whose save finished
        for version in range(1, kills + 1):
            before = set(_temp_names(d))
            pid = _save_in_child(path, version, size_mb)
            if when == "writing":
                _wait_for_bytes(d, before)
            else:
                time.sleep(rng.uniform(0.05, 0.95) * out.save_s)
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                done = version  # the save finished before the kill
            if set(_temp_names(d)) - before:
                out.mid_save += 1
            try:
                v = _version_of(path, size_mb)
                out.versions.append(v)
                # a kill after the rename may leave the new version: either is a finished one
                if v not in (done, version):
                    out.unloadable += 1
                done = v
            except Exception as e:
                out.unloadable += 1
                out.errors.append(f"after kill {version}: {type(e).__name__}: {e}")
        out.stale_after_kills = _dir_bytes(d, "model.pt")
        ember.save(_state(kills + 1, size_mb), path)
        if _version_of(path, size_mb) != kills + 1:
            out.errors.append("the final save did not store its version")
        out.leaked_bytes = _dir_bytes(d, "model.pt")
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return out
