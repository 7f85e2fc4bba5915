"""PyTorch's checkpoint formats, read and written without torch.

Zip format (``torch.save``'s default since 1.6): an uncompressed zip whose entries all sit
under one folder, ``<name>/data.pkl`` (the object, pickle protocol 2, with storages as
persistent ids ``("storage", torch.FloatStorage, key, location, numel)``), ``<name>/data/<key>``
(each storage's raw bytes), ``<name>/byteorder`` and ``<name>/version``.

Writing (both formats) lives in ``_torch_save``.

Legacy format (``_use_new_zipfile_serialization=False``, PyTorch < 1.6): five pickles in one
stream (magic number, protocol version, system info, the object, the storage keys), then each
storage as an int64 element count followed by its bytes.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import pickle
import struct
import warnings
import zipfile
from typing import Any

import numpy as np

from . import _torch_rebuild as rb
from ._torch_pickle import RestrictedUnpickler, globals_in_pickle, unsafe_names

__all__ = [
    "ZIP_MAGIC",
    "LEGACY_MAGIC",
    "load_zip",
    "load_legacy",
    "load_torch",
    "save_torch",
    "sniff",
    "get_unsafe_globals_in_checkpoint",
]

ZIP_MAGIC = b"PK\x03\x04"
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
_MAX_VERSION = 10  # PyTorch's reader accepts record versions up to this (it writes 3)


class TorchFormatError(RuntimeError):
    """A PyTorch checkpoint that is truncated, corrupted or of an unknown version."""


def warn_unsafe(name: str) -> None:
    warnings.warn(
        f"ember.load({name}, weights_only=False) unpickles arbitrary Python objects: a "
        "malicious checkpoint can run any code on this machine. Only load files you trust; "
        "prefer weights_only=True (with ember.serialization.add_safe_globals for your own "
        "classes).",
        UserWarning,
        stacklevel=4,
    )


class _Storages:
    """Resolves storage ids to memoised ``rb.Storage`` objects, placed per ``map_location``."""

    def __init__(self, read_bytes, place):
        self.read_bytes, self.place = read_bytes, place  # place(np_array, location) -> array
        self.loaded: dict[str, rb.Storage] = {}

    def __call__(self, pid):
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r} (expected a storage)")
        _, storage_type, key, location, numel = pid[:5]
        if (
            not isinstance(key, str)
            or not isinstance(location, str)
            or type(numel) is not int
            or numel < 0
        ):
            raise pickle.UnpicklingError(f"bad storage id {pid!r}")
        dtype = rb.storage_dtype(storage_type)
        st = self.loaded.get(key)
        if st is None:
            raw = self.read_bytes(key, numel * dtype.itemsize)
            arr = raw.view(dtype.np)[:numel]
            st = self.loaded[key] = rb.Storage(self.place(arr, location), dtype)
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy: a storage that is a slice of another one
            view_key, offset, view_size = view
            sub = self.loaded.get(view_key)
            if sub is None:
                sub = self.loaded[view_key] = rb.Storage(
                    st.data[offset : offset + view_size], st.dtype
                )
                sub.version = st.version
            return sub
        return st


# ---- zip -----------------------------------------------------------------------------------
def _data_offset(fh, info: zipfile.ZipInfo) -> int:
    fh.seek(info.header_offset)
    head = fh.read(30)
    if len(head) != 30 or head[:4] != ZIP_MAGIC:
        raise TorchFormatError(f"bad local header for {info.filename}")
    name_len, extra_len = struct.unpack("<HH", head[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _length(fh) -> int:
    """The length of a seekable binary stream (its position is kept)."""
    pos = fh.tell()
    end = fh.seek(0, os.SEEK_END)
    fh.seek(pos)
    return end


# DEFLATE cannot expand data by more than about 1032:1, so a compressed record that claims more
# than this many bytes per stored byte is corrupted (PyTorch itself stores records uncompressed).
_MAX_INFLATE = 1100


def _check_record_size(fp, info: zipfile.ZipInfo, length: int) -> None:
    """A zip record's declared sizes fit in the archive, checked before anything is allocated."""
    start = _data_offset(fp, info)
    stored = info.compress_type == zipfile.ZIP_STORED
    if start + info.compress_size > length or info.file_size > (
        info.compress_size if stored else info.compress_size * _MAX_INFLATE
    ):
        raise TorchFormatError(
            f"record {info.filename!r} declares {info.file_size} bytes, more "
            f"than the file's {length} bytes can hold: the file is truncated "
            f"or corrupted"
        )


def load_zip(fh, name: str, place, weights_only: bool, mmap_path: str | None, encoding: str) -> Any:
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise TorchFormatError(
            f"the file is truncated or not a valid zip archive ({exc})"
        ) from None
    with zf:
        length = _length(fh)
        pkls = [n for n in zf.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkls) != 1:
            raise TorchFormatError(
                "the zip archive has no <name>/data.pkl record: not a PyTorch checkpoint"
            )
        prefix = pkls[0][: -len("data.pkl")]
        names = set(zf.namelist())
        if prefix + "version" in names:
            text = zf.read(prefix + "version").decode("ascii", "replace").strip()
            if not text.isdigit() or not 1 <= int(text) <= _MAX_VERSION:
                raise TorchFormatError(
                    f"unknown PyTorch checkpoint format version {text!r} "
                    f"(ember reads versions 1 to {_MAX_VERSION})"
                )
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise TorchFormatError(f"unknown byteorder record {byteorder!r}")
        mm = None
        if mmap_path is not None:
            mm = np.memmap(mmap_path, dtype=np.uint8, mode="c")

        def read_bytes(key: str, nbytes: int) -> np.ndarray:
            record = f"{prefix}data/{key}"
            try:
                info = zf.getinfo(record)
            except KeyError:
                raise TorchFormatError(f"storage record {record!r} is missing") from None
            if info.file_size < nbytes:
                raise TorchFormatError(
                    f"storage record {record!r} holds {info.file_size} "
                    f"bytes, {nbytes} needed: the file is truncated"
                )
            _check_record_size(zf.fp, info, length)
            if mm is not None and info.compress_type == zipfile.ZIP_STORED:
                start = _data_offset(zf.fp, info)
                if start + nbytes > mm.size:
                    raise TorchFormatError("the file is truncated")
                return mm[start : start + nbytes].view(np.ndarray)  # plain: ember checks type
            buf = np.empty(info.file_size, dtype=np.uint8)
            with zf.open(info) as src:
                got = src.readinto(memoryview(buf))
            if got != info.file_size:
                raise TorchFormatError(f"storage record {record!r} is truncated")
            return buf[:nbytes]

        if byteorder == "big":
            native = place

            def place(arr, location):
                return native(arr.view(arr.dtype.newbyteorder(">")).astype(arr.dtype), location)

        storages = _Storages(read_bytes, place)
        try:
            _check_record_size(zf.fp, zf.getinfo(pkls[0]), length)
            data = zf.read(pkls[0])
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise TorchFormatError(f"data.pkl is unreadable ({exc})") from None
        return _unpickle(data, storages, weights_only, encoding)


def _unpickle(data: bytes, persistent_load, weights_only: bool, encoding: str) -> Any:
    up = RestrictedUnpickler(
        io.BytesIO(data), persistent_load, weights_only=weights_only, encoding=encoding
    )
    try:
        return up.load()
    except (EOFError, IndexError, struct.error) as exc:
        raise TorchFormatError(
            f"the pickle is truncated or corrupted ({type(exc).__name__}: {exc})"
        ) from None


# ---- legacy --------------------------------------------------------------------------------
def load_legacy(fh, name: str, place, weights_only: bool, encoding: str) -> Any:
    """Storages are allocated (on the CPU) as the object is unpickled and filled in place once
    their data, which follows the object in the stream, is read; then ``place`` moves each
    tensor where ``map_location`` says (per tensor: views of one storage moved to a GPU become
    separate arrays there)."""

    def one(persistent=_no_storage):
        up = RestrictedUnpickler(fh, persistent, weights_only=weights_only, encoding=encoding)
        try:
            return up.load()
        except (EOFError, IndexError, struct.error) as exc:
            raise TorchFormatError(
                f"the file is truncated or corrupted ({type(exc).__name__}: {exc})"
            ) from None

    if one() != LEGACY_MAGIC:
        raise TorchFormatError("invalid magic number: not a PyTorch legacy checkpoint")
    version = one()
    if version != LEGACY_PROTOCOL:
        raise TorchFormatError(f"unknown PyTorch legacy protocol version {version!r}")
    info = one()
    if isinstance(info, dict) and info.get("little_endian") is False:
        raise TorchFormatError("big-endian legacy checkpoints are not supported")
    locations: dict[str, str] = {}
    end = _length(fh)
    declared = [0]

    def empty(key: str, nbytes: int) -> np.ndarray:
        # each storage's bytes (and its 8-byte count) follow the object in the stream: all the
        # storages declared so far must fit in what is left, checked before allocating
        declared[0] += nbytes + 8
        if declared[0] > end - fh.tell():
            raise TorchFormatError(
                f"storage {key!r} declares {nbytes} bytes, more than the "
                f"{end - fh.tell()} bytes left in the file: it is truncated "
                f"or corrupted"
            )
        return np.zeros(nbytes, dtype=np.uint8)

    def keep(arr, location):
        return arr

    storages = _Storages(empty, keep)

    def record(pid):
        st = storages(pid)
        locations[pid[2]] = pid[3]
        return st

    obj = one(record)
    keys = one()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise TorchFormatError("bad storage key list")
    for key in keys:
        st = storages.loaded.get(key)
        if st is None:
            raise TorchFormatError(f"storage {key!r} is not referenced by the object")
        head = fh.read(8)
        if len(head) != 8:
            raise TorchFormatError("the file is truncated (storage data missing)")
        count = struct.unpack("<q", head)[0]
        if count != st.data.size:
            raise TorchFormatError(
                f"storage {key!r} holds {count} elements, the object says {st.data.size}"
            )
        view = memoryview(st.data.view(np.uint8))
        if count and fh.readinto(view) != view.nbytes:
            raise TorchFormatError(f"the file is truncated (storage {key!r})")
    return _relocate(
        obj,
        {id(st.version): locations[k] for k, st in storages.loaded.items() if k in locations},
        place,
        {},
    )


def _no_storage(pid):
    raise pickle.UnpicklingError("unexpected persistent id outside the object pickle")


def _relocate(obj, where: dict, place, memo: dict):
    """Legacy only: ``obj`` with each tensor in (nested) containers moved per ``place``."""
    from .tensor import Tensor

    if id(obj) in memo:
        return memo[id(obj)]
    if isinstance(obj, Tensor):
        loc = where.get(id(obj._version_counter), "cpu")
        data = place(obj._data, loc)
        out = obj
        if data is not obj._data:
            out = (
                type(obj)(Tensor._wrap(data), obj.requires_grad)
                if type(obj) is not Tensor
                else Tensor._wrap(data)
            )
            out.requires_grad = obj.requires_grad
            if getattr(obj, "__dict__", None):
                out.__dict__.update(obj.__dict__)
    elif type(obj) in (dict, collections.OrderedDict):
        out = type(obj)((k, _relocate(v, where, place, memo)) for k, v in obj.items())
    elif type(obj) in (list, tuple, set, frozenset):
        out = type(obj)(_relocate(v, where, place, memo) for v in obj)
    else:
        out = obj
    memo[id(obj)] = out
    return out


# ---- entry points used by ember.serialization ----------------------------------------------
def sniff(head: bytes) -> str:
    """ "zip", "legacy" (a PyTorch checkpoint) or "safetensors", from a file's first 16 bytes."""
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5 and head[8:9] != b"{":
        return "legacy"  # a pickle (safetensors' header, right after its length, is JSON)
    if len(head) > 262 and head[257:262] == b"ustar":
        return "tar"
    return "safetensors"


def load_torch(
    kind: str, f, name: str, place, weights_only: bool, mmap: bool | None, encoding: str
) -> Any:
    """Load a PyTorch checkpoint of ``kind`` ("zip" / "legacy") from a path or stream."""
    if not weights_only:
        warn_unsafe(name)
    is_path = isinstance(f, (str, os.PathLike))
    if mmap and not is_path:
        raise ValueError("f must be a file path in order to use the mmap argument")
    if mmap and kind != "zip":
        raise RuntimeError(
            "mmap can only be used with files saved with "
            "`torch.save(_use_new_zipfile_serialization=True)`, please "
            "re-save the file in the zip format"
        )
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(open(f, "rb")) if is_path else f
        if not is_path and not _seekable(fh):
            fh = io.BytesIO(fh.read())
        try:
            if kind == "zip":
                return load_zip(
                    fh, name, place, weights_only, os.fspath(f) if mmap else None, encoding
                )
            return load_legacy(fh, name, place, weights_only, encoding)
        except TorchFormatError as exc:
            raise RuntimeError(f"ember: cannot load {name}: {exc}") from None
        except RecursionError:  # e.g. 100,000 nested lists: a corrupted or hostile file
            raise RuntimeError(
                f"ember: cannot load {name}: the object is nested too deeply "
                "(the file is corrupted or not a checkpoint)"
            ) from None


def get_unsafe_globals_in_checkpoint(f) -> list[str]:
    r"""The globals in a PyTorch checkpoint that ``ember.load(f, weights_only=True)`` would
    refuse (neither torch's safe set nor added with ``add_safe_globals``), found without
    unpickling anything.

    Args:
        f: a path or a readable binary file-like object holding a ``torch.save`` checkpoint.
    """
    with contextlib.ExitStack() as stack:
        is_path = isinstance(f, (str, os.PathLike))
        fh = stack.enter_context(open(f, "rb")) if is_path else f
        if not _seekable(fh):
            fh = io.BytesIO(fh.read())
        pos = fh.tell()
        kind = sniff(fh.read(512))
        fh.seek(pos)
        try:
            if kind == "zip":
                with zipfile.ZipFile(fh) as zf:
                    pkl = [n for n in zf.namelist() if n.endswith("/data.pkl")]
                    if not pkl:
                        raise TorchFormatError("no <name>/data.pkl record")
                    return unsafe_names(globals_in_pickle(io.BytesIO(zf.read(pkl[0]))))
            if kind == "legacy":  # magic, protocol, system info, object, storage keys
                return unsafe_names([g for _ in range(5) for g in globals_in_pickle(fh)])
        except (zipfile.BadZipFile, ValueError, EOFError, TorchFormatError) as exc:
            raise RuntimeError(f"ember: cannot read {f!r}: {exc}") from None
        raise RuntimeError(f"ember: {f!r} is not a PyTorch checkpoint")


def _seekable(fh) -> bool:
    try:
        return bool(fh.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def save_torch(obj: Any, f, protocol: int, atomic_write, legacy: bool = False) -> None:
    """``ember.save(..., _use_new_zipfile_serialization=True)``: torch's zip format; ``False``
    (``legacy``): its pre-1.6 stream."""
    from ._torch_save import save_legacy, save_zip

    write = save_legacy if legacy else save_zip
    if isinstance(f, (str, os.PathLike)):

        def write_to(tmp: str) -> None:
            with open(tmp, "wb") as fh:
                write(obj, fh, protocol=protocol)

        atomic_write(os.fspath(f), write_to)
    elif legacy or _seekable(f):  # the legacy stream never seeks
        write(obj, f, protocol=protocol)
    else:  # zip needs to seek back to its local headers
        buf = io.BytesIO()
        save_zip(obj, buf, protocol=protocol)
        f.write(buf.getvalue())
