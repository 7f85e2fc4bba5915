"""File I/O under ``ember.serialization``: atomic writes, checksums, and reading one
safetensors payload from a path or a stream with errors that name the file."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import zlib
from collections.abc import Callable
from typing import IO

import numpy as np
import safetensors
import safetensors.numpy as _st_numpy

from . import _tempfiles

FileLike = str | os.PathLike | IO[bytes]

_MAX_HEADER = 100_000_000  # safetensors' own header limit

# safetensors dtype codes -> NumPy dtypes (for data read from a stream via deserialize)
_ST_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U64": np.uint64,
    "U32": np.uint32,
    "U16": np.uint16,
    "U8": np.uint8,
    "BOOL": np.bool_,
    "C64": np.complex64,
}
with contextlib.suppress(ImportError):
    import ml_dtypes

    _ST_DTYPES["BF16"] = ml_dtypes.bfloat16


# ---- writing ------------------------------------------------------------------------------
def crc(arr: np.ndarray) -> int:
    """CRC-32 of a C-contiguous array's bytes (zlib's, about 2 GB/s here)."""
    return zlib.crc32(arr.reshape(-1).view(np.uint8)) if arr.size else 0


def header_crc(meta: dict[str, str]) -> str:
    """CRC-32 over the metadata, so a flipped byte in the JSON structure is caught too."""
    value = 0
    for key in sorted(meta):
        value = zlib.crc32(f"{key}={meta[key]}\n".encode(), value)
    return str(value)


def write(entries: dict[str, np.ndarray], meta: dict[str, str], f: FileLike) -> None:
    """Write one safetensors payload (with checksums) to a path, atomically, or to a stream."""
    meta = dict(meta)
    meta["ember.crc32"] = json.dumps({k: crc(v) for k, v in entries.items()})
    meta["ember.header_crc32"] = header_crc(meta)
    if isinstance(f, (str, os.PathLike)):
        _atomic_write(os.fspath(f), lambda tmp: _st_numpy.save_file(entries, tmp, metadata=meta))
    else:
        f.write(_st_numpy.save(entries, metadata=meta))
        if hasattr(f, "flush"):
            f.flush()


def os_error(
    exc: BaseException, path: str, note: str = "the previous file is unchanged"
) -> OSError | None:
    """The ``OSError`` (errno set, e.g. ``ENOSPC``) behind a failed write to ``path``, or None.

    safetensors reports a full disk as ``SafetensorError: ... (os error 28)``: callers that
    catch ``OSError`` / check ``errno`` (and readers of the message) get the errno's name and the
    file instead. ``note`` is appended to the message."""
    if isinstance(exc, safetensors.SafetensorError):
        m = re.search(r"\(os error (\d+)\)", str(exc))
        code = int(m.group(1)) if m else None
    elif isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        code = exc.errno  # already an OSError: only the file and the outcome are added
    else:
        code = None
    if not code:
        return None
    name = errno.errorcode.get(code, f"errno {code}")
    return OSError(
        code, f"{os.strerror(code)} ({name}) while writing {path}" + (f"; {note}" if note else "")
    )


def _atomic_write(path: str, write_to: Callable[[str], None]) -> None:
    """Run ``write_to(tmp)`` and move ``tmp`` over ``path`` only once it is safely on disk."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise RuntimeError(f"Parent directory {directory} does not exist.")
    # temp files of killed writers (named after their pid) are removed by the next save here
    _tempfiles.remove_stale(directory)
    # The file is written inside a private directory named after this writer: writers that
    # make temp files of their own next to their target (safetensors >= 0.7 writes
    # ``.tmpXXXXXX`` and renames it) then leave nothing a later save cannot attribute and
    # remove if this process is killed mid-write.
    staging = _tempfiles.temp_path(path, "partial")
    os.mkdir(staging)
    tmp = os.path.join(staging, os.path.basename(path))
    try:
        # O_EXCL: never clobber a file we did not create. Permissions end up as a plain open()
        # would leave them: an existing file keeps its mode, a new one gets 0o666 minus umask.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        mode = os.stat(path).st_mode if os.path.isfile(path) else os.fstat(fd).st_mode
        os.close(fd)
        write_to(tmp)
        os.chmod(tmp, mode & 0o7777)  # the writer may have recreated it with its own mode
        with open(tmp, "rb+") as fh:
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        err = os_error(exc, path)
        if err is not None:
            raise err from exc
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable
        with contextlib.suppress(OSError):
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


# ---- reading ------------------------------------------------------------------------------
_CHUNK = 64 << 20  # read size for streams whose length cannot be known in advance


def remaining_bytes(fh) -> int | None:
    """Bytes left in a seekable binary stream after its position (None if not seekable)."""
    try:
        if not fh.seekable():
            return None
        pos = fh.tell()
        end = fh.seek(0, os.SEEK_END)
        fh.seek(pos)
    except (AttributeError, OSError, ValueError):
        return None
    return max(end - pos, 0)


class Source:
    """An opened safetensors payload (path or stream): ``metadata``, ``names``, ``array()``."""

    def __init__(self, f: FileLike, stack: contextlib.ExitStack):
        self._crcs: dict = {}
        self.name = repr(os.fspath(f)) if isinstance(f, (str, os.PathLike)) else repr(f)
        try:
            if isinstance(f, (str, os.PathLike)):
                with open(f, "rb") as fh:
                    self._sniff(fh.read(16))
                handle = stack.enter_context(safetensors.safe_open(os.fspath(f), "np"))
                self.metadata = handle.metadata() or {}
                self.names = list(handle.keys())
                self._get = handle.get_tensor
            else:
                self._from_stream(f)
        except safetensors.SafetensorError as exc:
            raise self.error(f"the file is truncated or corrupted ({exc})") from None

    def error(self, what: str) -> RuntimeError:
        return RuntimeError(f"ember: cannot load {self.name}: {what}")

    def _sniff(self, head: bytes) -> None:
        if not head:
            raise self.error("the file is empty")
        if head.startswith(b"PK\x03\x04"):
            raise self.error(
                "it is a zip archive (a PyTorch torch.save checkpoint?), not a "
                "safetensors file; read it with ember.load"
            )
        if len(head) < 8:
            raise self.error("the file is truncated (shorter than a safetensors header)")
        n = int.from_bytes(head[:8], "little")
        if n > _MAX_HEADER or (len(head) > 8 and head[8:9] != b"{"):
            raise self.error(
                "not a safetensors file (bad header); it is corrupted or was "
                "written by something else"
            )

    def _read_exact(self, fh, n: int) -> bytes:
        # A declared size is checked against what the stream holds before anything of that
        # size is allocated (``read(n)`` reserves n bytes up front): a seekable stream by its
        # length, any other by reading in bounded chunks, so memory follows the real data.
        if type(n) is not int or n < 0:
            raise self.error(f"the header is corrupted (bad size {n!r})")
        left = remaining_bytes(fh)
        if left is not None and n > left:
            raise self.error(
                f"the file is truncated or corrupted (it declares {n} bytes where {left} remain)"
            )
        if left is not None or n <= _CHUNK:
            data = fh.read(n)
        else:
            parts, got = [], 0
            while got < n:
                part = fh.read(min(_CHUNK, n - got))
                if not part:
                    break
                parts.append(part)
                got += len(part)
            data = b"".join(parts)
        if len(data) != n:
            raise self.error(f"the file is truncated (wanted {n} bytes, got {len(data)})")
        return data

    def _from_stream(self, fh) -> None:
        # Read exactly one safetensors payload, so several saves can share one stream.
        head = self._read_exact(fh, 8)
        self._sniff(head)
        raw = self._read_exact(fh, int.from_bytes(head, "little"))
        try:
            header = json.loads(raw)
            end = max(
                (v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0
            )
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise self.error(f"the header is corrupted ({exc})") from None
        body = self._read_exact(fh, end)
        arrays = {}
        for name, info in safetensors.deserialize(head + raw + body):
            if info["dtype"] not in _ST_DTYPES:
                raise self.error(
                    f"tensor {name!r} has dtype {info['dtype']}, which NumPy cannot hold"
                )
            arr = np.frombuffer(info["data"], dtype=_ST_DTYPES[info["dtype"]])
            arrays[name] = arr.reshape(info["shape"])
        self.metadata = header.get("__metadata__") or {}
        self.names = [k for k in header if k != "__metadata__"]
        self.names.sort()
        self._get = arrays.__getitem__

    def verify_header(self) -> None:
        meta = dict(self.metadata)
        want = meta.pop("ember.header_crc32", None)
        if want is not None and want != header_crc(meta):
            raise self.error("header checksum mismatch: the file is corrupted")
        try:
            self._crcs = json.loads(meta.get("ember.crc32", "{}"))
        except ValueError:
            raise self.error("the checksum table is corrupted") from None

    def array(self, name: str) -> np.ndarray:
        try:
            arr = self._get(name)
        except (KeyError, safetensors.SafetensorError) as exc:
            raise self.error(f"tensor data {name!r} is missing or unreadable ({exc})") from None
        want = self._crcs.get(name)
        if want is not None and crc(np.ascontiguousarray(arr)) != want:
            raise self.error(f"checksum mismatch in tensor data {name!r}: the file is corrupted")
        return arr
