"""``ember.jit.load`` of a TorchScript archive written by PyTorch (``torch.jit.save`` of
``torch.jit.script`` / ``torch.jit.trace``, ultralytics' ``.torchscript`` exports).

The archive is a zip with one top folder holding ``code/__torch__/...py`` (the classes'
TorchScript source), ``data.pkl`` (the module tree: pickled ``__torch__`` objects, tensors as
persistent ids of ``data/N`` storages), ``constants.pkl`` (``CONSTANTS.cN``, storages in
``constants/N``), ``version`` and ``extra/`` (``_extra_files``). The code is compiled by
``_torchscript_code``; the pickles are read by ember's restricted unpickler of PyTorch
checkpoints with the archive's own classes (and TorchScript's list builders) allowed.
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import struct
import zipfile
from typing import IO, Any

import numpy as np

from .._serialization_read import _place
from .._torch_format import _MAX_VERSION, _check_record_size, _length, _Storages
from .._torch_pickle import RestrictedUnpickler
from ._torchscript_code import Node, compile_sources
from ._torchscript_module import TorchScriptModule, build_object, new_object

__all__ = ["is_torchscript", "load_torchscript"]


def _prefix_of(names: list[str]) -> str | None:
    """The archive's top folder if it is a TorchScript archive (it has ``code/`` or
    ``constants.pkl`` beside ``data.pkl``), else None."""
    for n in names:
        parts = n.split("/")
        if len(parts) >= 3 and parts[1] == "code" and parts[2].startswith("__torch__"):
            return parts[0] + "/"
        if len(parts) == 2 and parts[1] == "constants.pkl":
            return parts[0] + "/"
    return None


def is_torchscript(f: str | os.PathLike | IO[bytes]) -> bool:
    """Whether ``f`` is a zip archive written by ``torch.jit.save`` (the stream's position
    is kept)."""
    pos = None if isinstance(f, (str, os.PathLike)) else f.tell()
    try:
        with zipfile.ZipFile(f) as z:
            return _prefix_of(z.namelist()) is not None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):
        return False
    finally:
        if pos is not None:
            f.seek(pos)


_LIST_BUILDERS = {
    name: (lambda xs: list(xs))
    for name in (
        "build_intlist", "build_floatlist", "build_doublelist", "build_boollist",
        "build_tensorlist", "build_complexlist",
    )
}  # fmt: skip


def _restore_type_tag(value, type_str):
    return value


class _ArchiveUnpickler(RestrictedUnpickler):
    """The weights-only unpickler plus the archive's ``__torch__`` classes (compiled from its
    ``code/``) and ``torch.jit._pickle``'s list builders; everything else stays refused."""

    dispatch = dict(RestrictedUnpickler.dispatch)

    def __init__(self, file, persistent_load, root: Node):
        super().__init__(file, persistent_load, weights_only=True)
        self._root = root
        self._builders = {**_LIST_BUILDERS, "restore_type_tag": _restore_type_tag}
        self._ours = {id(f) for f in self._builders.values()}

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            try:
                cls = self._root.resolve(f"{module}.{name}")
            except AttributeError:
                raise pickle.UnpicklingError(
                    f"data.pkl refers to {module}.{name}, which the archive's code/ does "
                    "not define (the archive is corrupted)"
                ) from None
            self._ours.add(id(cls))
            return cls
        if module == "torch.jit._pickle" and name in self._builders:
            return self._builders[name]
        return super().find_class(module, name)

    def load_reduce(self):
        func = self.stack[-2]
        if id(func) in self._ours and func in self._builders.values():
            args = self.stack.pop()
            self.stack[-1] = func(*args)
            return
        RestrictedUnpickler.load_reduce(self)

    dispatch[pickle.REDUCE[0]] = load_reduce

    def _new(self, cls, args):
        if id(cls) in self._ours and isinstance(cls, type):
            return new_object(cls)
        return super()._new(cls, args)

    def load_build(self):
        inst = self.stack[-2]
        if id(type(inst)) in self._ours:
            state = self.stack.pop()
            build_object(self.stack[-1], state)
            return
        RestrictedUnpickler.load_build(self)

    dispatch[pickle.BUILD[0]] = load_build


class _Archive:
    """The records of one TorchScript zip, read with the checks of ``ember.load``."""

    def __init__(self, fh, name: str) -> None:
        try:
            self.zip = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, EOFError, OSError) as exc:
            raise RuntimeError(
                f"ember.jit.load: cannot read {name}: the file is truncated or not a valid "
                f"zip archive ({exc})"
            ) from None
        self.name, self.length = name, _length(fh)
        prefix = _prefix_of(self.zip.namelist())
        if prefix is None:
            raise RuntimeError(f"ember.jit.load: {name} is not a TorchScript archive")
        self.prefix = prefix
        self.records = {n[len(prefix) :] for n in self.zip.namelist() if n.startswith(prefix)}

    def error(self, what: str) -> RuntimeError:
        return RuntimeError(f"ember.jit.load: cannot load {self.name}: {what}")

    def read(self, record: str) -> bytes:
        if record not in self.records:
            raise self.error(f"the archive has no {record} record (it is truncated or corrupted)")
        info = self.zip.getinfo(self.prefix + record)
        try:
            _check_record_size(self.zip.fp, info, self.length)
            return self.zip.read(info)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as exc:
            raise self.error(f"record {record!r} is unreadable ({exc})") from None

    def storages(self, folder: str, map_location) -> _Storages:
        def read_bytes(key: str, nbytes: int) -> np.ndarray:
            raw = self.read(f"{folder}/{key}")
            if len(raw) < nbytes:
                raise self.error(f"storage {folder}/{key} holds {len(raw)} bytes, {nbytes} needed")
            return np.frombuffer(raw, dtype=np.uint8)[:nbytes].copy()

        return _Storages(read_bytes, lambda arr, loc: _place(arr, loc, map_location))

    def unpickle(self, record: str, folder: str, root: Node, map_location) -> Any:
        up = _ArchiveUnpickler(
            io.BytesIO(self.read(record)), self.storages(folder, map_location), root
        )
        try:
            return up.load()
        except (EOFError, IndexError, struct.error, pickle.UnpicklingError, KeyError) as exc:
            raise self.error(
                f"{record} is truncated or corrupted ({type(exc).__name__}: {exc})"
            ) from None


def load_torchscript(
    f: str | os.PathLike | IO[bytes], map_location=None, _extra_files: dict | None = None
) -> TorchScriptModule:
    """Load a PyTorch TorchScript archive as an ember Module (see ``ember.jit.load``)."""
    name = repr(os.fspath(f)) if isinstance(f, (str, os.PathLike)) else "the file"
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(open(f, "rb")) if isinstance(f, (str, os.PathLike)) else f
        arc = _Archive(fh, name)
        for record in ("version", ".data/version"):
            if record in arc.records:
                text = arc.read(record).decode("ascii", "replace").strip()
                if not text.isdigit() or not 1 <= int(text) <= _MAX_VERSION:
                    raise arc.error(
                        f"unknown TorchScript format version {text!r} (ember reads versions "
                        f"1 to {_MAX_VERSION})"
                    )
        if "byteorder" in arc.records and arc.read("byteorder").strip() != b"little":
            raise arc.error("it was written on a big-endian machine, which ember does not read")
        if "data.pkl" not in arc.records:
            raise arc.error("it has no data.pkl (an archive of a pre-1.4 torch, or corrupted)")
        sources = {}
        for r in sorted(arc.records):
            if r.startswith("code/") and r.endswith(".py"):
                try:
                    sources[r[len("code/") :]] = arc.read(r).decode("utf-8")
                except UnicodeDecodeError:
                    raise arc.error(f"{r} is not text (the archive is corrupted)") from None
        empty = Node("__torch__")
        constants = ()
        if "constants.pkl" in arc.records:
            constants = arc.unpickle("constants.pkl", "constants", empty, map_location)
        archive_name = arc.prefix.rstrip("/")
        root = compile_sources(sources, constants, TorchScriptModule, archive_name)
        module = arc.unpickle("data.pkl", "data", root, map_location)
        if _extra_files is not None:
            for k in list(_extra_files):
                rec = f"extra/{k}"
                _extra_files[k] = arc.read(rec) if rec in arc.records else b""
    return module
