"""Disk full during a checkpoint, shared by tests/chaos/test_disk_full.py and
``benchmarks/chaos.py``.

The checkpoint directory is a small tmpfs (``mount -t tmpfs -o size=2m``): a first checkpoint
fits, a second, larger one does not. Each scenario reports the error the save raised, whether the
first checkpoint still loads bit for bit, which files are left in the directory besides the
checkpoint (temp files of the failed save would be leaks), and the bytes the filesystem holds
beyond the first checkpoint. Needs root (``mount``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

__all__ = ["KINDS", "DiskFullOutcome", "available", "run_disk_full", "small_tmpfs"]

KINDS = ("ember.save", "ember.save (zip)", "dcp.save", "Trainer checkpoint")
SIZE = "2m"
SMALL, LARGE = 64 * 1024, 1024 * 1024  # float32 elements: 256 KiB fits, 4 MiB does not


def available() -> bool:
    return os.geteuid() == 0 and shutil.which("mount") is not None


@contextlib.contextmanager
def small_tmpfs(size: str = SIZE) -> Iterator[str]:
    """A fresh tmpfs of ``size`` mounted on a temporary directory; unmounted afterwards."""
    where = tempfile.mkdtemp(prefix="ember-diskfull-")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", where],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        os.rmdir(where)
        raise RuntimeError(f"mount -t tmpfs failed: {r.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", where], capture_output=True)
        os.rmdir(where)


@dataclass
class DiskFullOutcome:
    kind: str
    error: str | None = None  # "Type: message" of what the failed save raised
    errno: int | None = None  # the errno of the OSError in the chain, if any
    previous_loads: bool = False  # the first checkpoint loads, bit for bit
    leftovers: list[str] = field(default_factory=list)  # files other than the checkpoint's
    leaked_bytes: int = 0  # bytes used on the filesystem beyond the first checkpoint
    detect_s: float = 0.0  # from the start of the failing save to its error


def _errno_in_chain(exc: BaseException | None) -> int | None:
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno:
            return exc.errno
        exc = exc.__cause__ or exc.__context__
    return None


def _used_bytes(where: str) -> int:
    st = os.statvfs(where)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


def _files(where: str) -> list[str]:
    return sorted(
        os.path.relpath(os.path.join(d, f), where) for d, _, fs in os.walk(where) for f in fs
    )


def _state(n: int, fill: float) -> dict:
    import ember

    return {"w": ember.from_numpy(np.full(n, fill, np.float32)), "step": int(fill)}


def _run_save(kind: str, where: str, out: DiskFullOutcome) -> None:
    import ember

    if kind.startswith("ember.save"):
        kw = {"_use_new_zipfile_serialization": True} if "zip" in kind else {}
        path = os.path.join(where, "ckpt.pt")
        ember.save(_state(SMALL, 1.0), path, **kw)
        files, used = _files(where), _used_bytes(where)
        t0 = time.monotonic()
        try:
            ember.save(_state(LARGE, 2.0), path, **kw)
        except Exception as e:
            out.detect_s = time.monotonic() - t0
            out.error, out.errno = f"{type(e).__name__}: {e}", _errno_in_chain(e)
        back = ember.load(path)
        out.previous_loads = back["step"] == 1 and bool((back["w"].numpy() == 1.0).all())
    else:
        import ember.distributed.checkpoint as dcp

        path = os.path.join(where, "ckpt")
        dcp.save(_state(SMALL, 1.0), checkpoint_id=path)
        files, used = _files(where), _used_bytes(where)
        t0 = time.monotonic()
        try:
            dcp.save(_state(LARGE, 2.0), checkpoint_id=path)
        except Exception as e:
            out.detect_s = time.monotonic() - t0
            out.error, out.errno = f"{type(e).__name__}: {e}", _errno_in_chain(e)
        back = _state(SMALL, 0.0)
        dcp.load(back, checkpoint_id=path)
        out.previous_loads = back["step"] == 1 and bool((back["w"].numpy() == 1.0).all())
    out.leftovers = sorted(set(_files(where)) - set(files))
    out.leaked_bytes = max(0, _used_bytes(where) - used)


def _trainer_loop(config):
    """Rank 0 reports a small checkpoint, then one larger than the disk."""
    import ember
    from ember.distributed.train import Checkpoint, get_context, report

    rank = get_context().get_world_rank()
    for step, n in enumerate((config["small"], config["large"])):
        with tempfile.TemporaryDirectory() as d:
            ck = None
            if rank == 0:
                ember.save(_state(n, float(step + 1)), os.path.join(d, "state.pt"))
                ck = Checkpoint.from_directory(d)
            report({"step": step}, checkpoint=ck)


def _run_trainer(where: str, out: DiskFullOutcome) -> None:
    from ray import cloudpickle  # Ray ships the loop with its own copy of cloudpickle

    import ember
    from ember.distributed.train import FailureConfig, RunConfig, ScalingConfig, Trainer

    # the loop travels by value: Ray's workers need not import this module
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    run_dir = os.path.join(where, "run")
    t0 = time.monotonic()
    try:
        Trainer(
            _trainer_loop,
            {"small": SMALL, "large": LARGE},
            scaling_config=ScalingConfig(num_workers=2),
            run_config=RunConfig(
                storage_path=where, name="run", verbose=0, failure_config=FailureConfig(0)
            ),
        ).fit()
    except Exception as e:
        out.detect_s = time.monotonic() - t0
        out.error, out.errno = f"{type(e).__name__}: {e}", _errno_in_chain(e)
    names = sorted(n for n in os.listdir(run_dir) if n.startswith("checkpoint_"))
    if names:
        back = ember.load(os.path.join(run_dir, names[0], "state.pt"))
        out.previous_loads = back["step"] == 1 and bool((back["w"].numpy() == 1.0).all())
    # temp files and directories of interrupted writes (dot names; the run's logs are not)
    out.leftovers = [f for f in _files(where) if any(p.startswith(".") for p in f.split(os.sep))]


def run_disk_full(kind: str) -> DiskFullOutcome:
    """Save a checkpoint that fits on a 2 MiB tmpfs, then one that does not, with ``kind``
    (one of ``KINDS``); report what happened."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    out = DiskFullOutcome(kind)
    with small_tmpfs() as where:
        if kind == "Trainer checkpoint":
            _run_trainer(where, out)
        else:
            _run_save(kind, where, out)
    return out
