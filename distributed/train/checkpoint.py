"""``Checkpoint``: a directory of files, as in Ray Train.

A worker builds one with ``Checkpoint.from_directory(tmpdir)`` and passes it to ``report``; the
driver persists it under the run directory (atomically: written to a temp name, then renamed).
Checkpoints travel from worker to driver as packed bytes, so workers on other nodes need no
shared file system.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile


class Checkpoint:
    """A checkpoint directory. ``to_directory`` copies it, ``as_directory`` lends it."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    @classmethod
    def from_directory(cls, path: str) -> Checkpoint:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"Checkpoint.from_directory: {path!r} is not a directory")
        return cls(path)

    def to_directory(self, path: str | None = None) -> str:
        """Copy the checkpoint's files to ``path`` (a new temp dir when None); return it."""
        dest = path or tempfile.mkdtemp(prefix="ember_ckpt_")
        shutil.copytree(self.path, dest, dirs_exist_ok=True)
        return dest

    @contextlib.contextmanager
    def as_directory(self):
        """The checkpoint as a local directory for the duration of the block (no copy)."""
        yield self.path

    def __repr__(self) -> str:
        return f"Checkpoint(path={self.path!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Checkpoint) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    # ---- transport between processes -----------------------------------------------------
    def pack(self) -> bytes:
        """The directory as an uncompressed tar archive."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(self.path, arcname=".")
        return buf.getvalue()


def unpack_into(blobs: list[bytes], dest: str) -> Checkpoint:
    """Write the packed checkpoints of all ranks into one directory ``dest``, atomically."""
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp_" + os.path.basename(dest) + "_", dir=parent)
    try:
        for blob in blobs:
            with tarfile.open(fileobj=io.BytesIO(blob), mode="r") as tar:
                tar.extractall(tmp, filter="data")
        if os.path.exists(dest):
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        from ember._serialization_io import os_error

        # a full disk: OSError(ENOSPC) naming the checkpoint, whose predecessors are untouched
        err = os_error(exc, dest, note="the previous checkpoints are unchanged")
        if err is not None:
            raise err from exc
        raise
    return Checkpoint(dest)
