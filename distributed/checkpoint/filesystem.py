"""``FileSystemWriter`` / ``FileSystemReader``: a distributed checkpoint as a directory.

Layout: one safetensors file per rank, ``__<rank>_0.distcp``, holding the chunks that rank
wrote, plus ``.metadata`` (JSON, :mod:`.metadata`) written last by the coordinator.

Why safetensors: a reader maps the file and reads only the byte ranges of the chunks (or
parts of chunks) it needs, so loading on another number of ranks does not read whole files;
its header is plain JSON, and nothing pickled is ever executed on load. Dtypes safetensors'
NumPy layer lacks (bfloat16, complex) are stored as bytes in an extra trailing dimension, and
``.metadata`` records the real dtype.

Atomicity: a save writes everything into a staging directory beside ``checkpoint_id`` and the
coordinator exchanges it with the previous checkpoint only after every rank's file is on disk
(fsynced), so a save killed at any point leaves the previous checkpoint loadable.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid

import numpy as np

from ember import _serialization_io, _tempfiles

from ..fsdp import _swap
from ._items import np_dtype
from .metadata import METADATA_FILE, Metadata

__all__ = ["FileSystemReader", "FileSystemWriter"]

_STORABLE = frozenset(
    "bool int8 int16 int32 int64 uint8 uint16 uint32 uint64 float16 float32 float64".split()
)


def rank_file(rank: int) -> str:
    return f"__{rank}_0.distcp"


def _is_ours(name: str) -> bool:
    return (
        name == METADATA_FILE
        or (name.startswith("__") and name.endswith(".distcp"))
        or (name.startswith(".") and name.endswith((".tmp", ".done")))
    )


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def to_storable(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr)
    if arr.dtype.name in _STORABLE:
        return arr
    return np.ascontiguousarray(arr[..., None]).view(np.uint8)


def from_storable(arr: np.ndarray, dtype_name: str) -> np.ndarray:
    if dtype_name in _STORABLE:
        return arr
    return np.ascontiguousarray(arr).view(np_dtype(dtype_name))[..., 0]


class FileSystemWriter:
    """Writes a distributed checkpoint into the directory ``path`` (PyTorch's name).

    ``sync_files`` fsyncs every file before the checkpoint is put in place.
    """

    def __init__(self, path: str | os.PathLike, sync_files: bool = True, **_unused) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"FileSystemWriter: path must be a str or PathLike, got {path!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.sync_files = sync_files

    def reset(self, checkpoint_id=None) -> None:
        if checkpoint_id is not None:
            self.path = os.path.abspath(os.fspath(checkpoint_id))

    # ---- coordinator --------------------------------------------------------------------
    def begin(self) -> tuple[str, str]:
        """Coordinator: a new checkpoint id and its staging directory (a sibling of the
        target, so the final rename stays on one filesystem)."""
        final = self.path
        if os.path.lexists(final) and not os.path.isdir(final):
            raise FileExistsError(f"distributed checkpoint: {final} exists and is not a directory")
        parent = os.path.dirname(final)
        os.makedirs(parent, exist_ok=True)
        _swap.recover(final, METADATA_FILE)
        _tempfiles.remove_stale(parent)
        staging = _tempfiles.temp_path(final, "partial")
        os.mkdir(staging)
        return uuid.uuid4().hex, staging

    def finish(self, staging: str, metadata: Metadata) -> None:
        """Coordinator: write ``.metadata`` (after every rank's file is complete) and put the
        checkpoint in place."""
        tmp = os.path.join(staging, f".{METADATA_FILE}.{metadata.checkpoint_id}.tmp")
        with open(tmp, "w") as f:
            f.write(metadata.dumps())
            f.flush()
            if self.sync_files:
                os.fsync(f.fileno())
        os.replace(tmp, os.path.join(staging, METADATA_FILE))
        for name in os.listdir(staging):
            if name.endswith(".done"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(staging, name))
        _swap.install(staging, self.path, _is_ours)

    def install(self, staging: str) -> None:
        """A rank saving into its own directory: put its file in place (no ``.metadata``)."""
        _swap.install(staging, self.path, _is_ours)

    # ---- every rank ---------------------------------------------------------------------
    def write_rank(self, staging: str, rank: int, arrays: dict[str, np.ndarray]) -> str:
        """Write this rank's chunks (``{key: host array}``); returns the file name."""
        from safetensors.numpy import save_file

        name = rank_file(rank)
        path = os.path.join(staging, name)
        try:
            save_file({k: to_storable(a) for k, a in arrays.items()}, path)
        except Exception as exc:  # a full disk: an OSError naming ENOSPC and the file
            err = _serialization_io.os_error(exc, path, note="")
            if err is None:
                raise
            raise err from exc
        if self.sync_files:
            _fsync_file(path)
        return name

    def mark_done(self, staging: str, rank: int, checkpoint_id: str) -> None:
        with open(os.path.join(staging, f".{rank}.done"), "w") as f:
            f.write(checkpoint_id)

    def wait_done(self, staging: str, world_size: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        missing = list(range(world_size))
        while True:
            missing = [
                r for r in missing if not os.path.exists(os.path.join(staging, f".{r}.done"))
            ]
            if not missing:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"async_save: ranks {missing} did not finish writing {self.path} within "
                    f"{timeout:g} s"
                )
            time.sleep(0.01)

    def wait_installed(self, checkpoint_id: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        path = os.path.join(self.path, METADATA_FILE)
        while True:
            with contextlib.suppress(OSError, ValueError, KeyError, RuntimeError):
                with open(path) as f:
                    if Metadata.loads(f.read()).checkpoint_id == checkpoint_id:
                        return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"async_save: the checkpoint {self.path} was not completed within {timeout:g} s"
                )
            time.sleep(0.01)


class FileSystemReader:
    """Reads a distributed checkpoint from the directory ``path`` (PyTorch's name)."""

    def __init__(self, path: str | os.PathLike) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"FileSystemReader: path must be a str or PathLike, got {path!r}")
        self.path = os.path.abspath(os.fspath(path))
        self._dir: str | None = None
        self._files: dict = {}

    def reset(self, checkpoint_id=None) -> None:
        self.close()
        if checkpoint_id is not None:
            self.path = os.path.abspath(os.fspath(checkpoint_id))

    def read_metadata(self) -> Metadata:
        directory = _swap.resolve(self.path, METADATA_FILE)
        path = os.path.join(directory, METADATA_FILE)
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"{self.path} has no {METADATA_FILE}: not a distributed checkpoint, or its "
                "save did not finish"
            )
        with open(path) as f:
            md = Metadata.loads(f.read(), path)
        self._dir = directory
        return md

    def read(self, file: str, key: str, dtype_name: str, index=None) -> np.ndarray:
        """Chunk ``key`` of ``file`` (only ``index``, a tuple of slices, when given)."""
        from safetensors import safe_open

        if self._dir is None:
            self.read_metadata()
        handle = self._files.get(file)
        if handle is None:
            path = os.path.join(self._dir, file)
            if not os.path.exists(path):
                raise FileNotFoundError(f"distributed checkpoint {self.path}: {file} is missing")
            handle = self._files[file] = safe_open(path, framework="numpy")
        if index is None or not index:
            arr = handle.get_tensor(key)
        else:
            arr = handle.get_slice(key)[index]
        return from_storable(arr, dtype_name)

    def close(self) -> None:
        self._files.clear()
        self._dir = None
