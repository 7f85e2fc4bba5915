"""``ember.save`` / ``ember.load`` and ``save_safetensors`` / ``load_safetensors``.

File format: every file is one safetensors file. ``ember.save`` stores the object's structure
as JSON in the safetensors metadata (``"format": "ember"``), with tensors as placeholders and
their data as safetensors tensors (written through the ``safetensors`` package's NumPy API).
Loading such a file never runs code from it. Objects that JSON cannot express (a whole
``nn.Module``, arbitrary classes) are pickled, tensor data still outside the pickle; those files
load only with ``weights_only=False``, as in PyTorch. CRC-32 checksums of the header and of every
tensor catch corruption; truncation is caught by safetensors' own header checks.

``save_safetensors`` writes a plain ``{name: tensor}`` file that ``safetensors.torch.load_file``
reads; ``load_safetensors`` reads any safetensors file, including PyTorch's.

Writes to a path are atomic: the data goes to a temporary file in the same directory, is
flushed and fsync'ed, then ``os.replace``'d over the target, so an interrupted save leaves the
previous file intact.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _serialization_codec as codec
from . import _serialization_io as sio
from . import _torch_format
from ._torch_format import get_unsafe_globals_in_checkpoint
from ._torch_pickle import add_safe_globals, clear_safe_globals, get_safe_globals, safe_globals
from .backend import _cupy
from .backend.device import as_device, device, device_count, is_available
from .tensor import Tensor

__all__ = [
    "save",
    "load",
    "save_safetensors",
    "load_safetensors",
    "add_safe_globals",
    "clear_safe_globals",
    "get_safe_globals",
    "safe_globals",
    "get_unsafe_globals_in_checkpoint",
]

FileLike = sio.FileLike
MapLocation = None | str | device | int | dict | Callable

_FORMAT_VERSION = "1"
_INLINE_STRUCTURE_LIMIT = 1 << 20  # larger structures go into an entry, not the header


# ---- writing ------------------------------------------------------------------------------
def save(
    obj: Any,
    f: FileLike,
    pickle_module=pickle,
    pickle_protocol: int = 2,
    _use_new_zipfile_serialization: bool | None = None,
) -> None:
    r"""Save an object to a file (atomically) or a writable binary file-like object.

    By default the file is ember's own format (safetensors with a JSON structure; see
    ``docs/serialization.md``). ``_use_new_zipfile_serialization=True`` writes PyTorch's zip
    format instead, which ``torch.load(f, weights_only=True)`` reads (tensors, Parameters,
    containers, dtypes, devices, ``Size``); views of one array stay views of one storage.
    ``ember.load`` reads both, telling them apart by the file's first bytes.

    Tensors, numbers, strings, ``None``, bytes, dtypes, devices and (nested) lists, tuples,
    dicts, OrderedDicts and sets of them (state_dicts, optimizer state_dicts, checkpoints) are
    stored as data that :func:`load` reads back without running code. Anything else (e.g. a
    whole ``nn.Module``) is pickled and can only be loaded with ``weights_only=False``.

    Tensors keep dtype, shape, ``requires_grad``, device and class (Tensor / Parameter); the same
    Tensor object under two keys loads as one object, and tensors sharing data load sharing it.

    Args:
        obj: the object to save.
        f: a path (``str`` / ``os.PathLike``) or a file-like object with ``write``.
        pickle_module: module used for pickling objects that need it.
        pickle_protocol: pickle protocol for such objects.
        _use_new_zipfile_serialization: ``True``: PyTorch's zip format; ``None`` (default):
            ember's format. ``False`` (PyTorch's pre-1.6 format) is not written.
    """
    if _use_new_zipfile_serialization is not None:
        if _use_new_zipfile_serialization is not True:
            raise ValueError(
                "ember.save writes PyTorch's zip format "
                "(_use_new_zipfile_serialization=True), not its legacy format"
            )
        return _torch_format.save_torch(obj, f, pickle_protocol, sio._atomic_write)
    enc = codec.Encoder()
    meta = {"format": "ember", "ember.version": _FORMAT_VERSION}
    try:
        structure = json.dumps(enc.encode(obj), allow_nan=False, separators=(",", ":"))
        meta["ember.kind"] = "structure"
    except codec.NotPlain as why:
        enc = codec.Encoder()
        blob = codec.pickle_dumps(obj, enc, pickle_module, pickle_protocol)
        enc.entries["pickle"] = np.frombuffer(blob, dtype=np.uint8)
        meta["ember.kind"] = "pickle"
        meta["ember.pickle_reason"] = why.what
        structure = None
    if structure is not None:
        if len(structure) <= _INLINE_STRUCTURE_LIMIT:
            meta["ember.structure"] = structure
        else:
            enc.entries["structure"] = np.frombuffer(structure.encode(), dtype=np.uint8)
    meta["ember.tensors"] = json.dumps(enc.tensors, separators=(",", ":"))
    sio.write(enc.entries, meta, f)


def save_safetensors(state_dict: dict, path: FileLike, metadata: dict | None = None) -> None:
    r"""Save a ``{name: tensor}`` state_dict as a plain safetensors file (atomically).

    PyTorch reads it with ``safetensors.torch.load_file(path)``. Keys that share one tensor's
    data are written under each key (PyTorch needs every key) and loaded back by
    :func:`load_safetensors` as tensors sharing one array.

    Args:
        state_dict: mapping of ``str`` names to tensors.
        path: destination path or writable binary file-like object.
        metadata: optional ``{str: str}`` stored in the header (``"format": "pt"`` by default,
            which Hugging Face loaders expect).
    """
    if not hasattr(state_dict, "items"):
        raise TypeError(f"save_safetensors expects a dict of tensors, got {type(state_dict)}")
    meta = {"format": "pt"}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"metadata must map str to str, got {k!r}: {type(v).__name__}")
        if k.startswith("ember."):
            raise ValueError(f"metadata key {k!r} is reserved (keys starting with 'ember.')")
        meta[k] = v
    entries: dict[str, np.ndarray] = {}
    first_key: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for key, t in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"state_dict keys must be str, got {key!r}")
        if not isinstance(t, Tensor):
            raise TypeError(f"state_dict[{key!r}] is a {type(t).__name__}, not a Tensor")
        if t.dtype.name == "complex128":
            raise TypeError(f"state_dict[{key!r}]: safetensors has no complex128 type")
        if id(t._data) in first_key:
            aliases[key] = first_key[id(t._data)]
        else:
            first_key[id(t._data)] = key
        entries[key] = codec.storable_array(t._data)[0]
    meta["ember.order"] = json.dumps(list(entries))
    if aliases:
        meta["ember.aliases"] = json.dumps(aliases)
    sio.write(entries, meta, path)


# ---- reading ------------------------------------------------------------------------------
def _check_device(target) -> device:
    """The device ``target`` names, with torch's errors for CUDA that is absent or too small."""
    if isinstance(target, int) and not isinstance(target, bool):
        dev = device("cuda", target)
    elif isinstance(target, (str, device)):
        dev = device(target)
    else:
        raise TypeError(
            f"map_location: expected a device, str, int, dict or callable, got "
            f"{type(target).__name__}"
        )
    if dev.type == "cuda":
        if not is_available():
            raise RuntimeError(
                "Attempting to deserialize object on a CUDA device but "
                "ember.cuda.is_available() is False. If you are running on a CPU-only machine, "
                "please use ember.load with map_location=ember.device('cpu') to map your "
                f"tensors to the CPU. ({_cupy._error})"
            )
        dev = as_device(dev)
        if dev.index >= device_count():
            raise RuntimeError(
                f"Attempting to deserialize object on CUDA device {dev.index} but "
                f"ember.cuda.device_count() is {device_count()}. Please use ember.load with "
                "map_location to map your tensors to an existing device."
            )
    return dev


def _place(arr: np.ndarray, saved: str, map_location: MapLocation) -> np.ndarray:
    """The array for data saved on device ``saved``, moved as ``map_location`` asks (torch's
    rules: None keeps the saved device; a str/device/int picks one; a dict maps location
    strings; a callable ``fn(cpu_tensor, location)`` returns a tensor or None for the default)."""
    if map_location is None:
        target = saved
    elif isinstance(map_location, dict):
        table = {
            str(device(k)) if not isinstance(k, device) else str(k): v
            for k, v in map_location.items()
        }
        target = table.get(saved, saved)
    elif callable(map_location) and not isinstance(map_location, device):
        out = map_location(Tensor._wrap(arr), saved)
        if out is None:
            target = saved
        elif isinstance(out, Tensor):
            return out._data
        else:
            raise TypeError(
                f"map_location returned {type(out).__name__}, expected a Tensor or None"
            )
    else:
        target = map_location
    dev = _check_device(target)
    if dev.type == "cpu":
        return arr
    cp = _cupy.require_cupy()
    with cp.cuda.Device(dev.index):
        return cp.asarray(arr)


def _meta_array(rec: dict):
    from .backend import meta

    if not all(type(d) is int and d >= 0 for d in rec["shape"]):
        raise codec.FormatError(f"bad shape {rec['shape']!r}")
    try:
        return meta.empty(rec["shape"], np.dtype(rec["dtype"]))
    except TypeError:
        raise codec.FormatError(f"unknown dtype {rec['dtype']!r}") from None


class _Tensors:
    """Builds tensors from records, memoised so shared tensors and data stay shared."""

    def __init__(self, src: sio.Source, records: list, map_location: MapLocation):
        self.src, self.records, self.map_location = src, records, map_location
        self._tensors: dict[int, Tensor] = {}
        self._entries: dict[str, np.ndarray] = {}
        self._placed: dict[tuple[str, str], Any] = {}

    def entry(self, name: str) -> np.ndarray:
        arr = self._entries.get(name)
        if arr is None:
            arr = self._entries[name] = self.src.array(name)
        return arr

    def tensor(self, i: int) -> Tensor:
        t = self._tensors.get(i)
        if t is not None:
            return t
        if not 0 <= i < len(self.records):
            raise codec.FormatError(f"tensor index {i} out of range")
        rec = self.records[i]
        key = (rec["entry"], rec["device"])
        data = self._placed.get(key)
        if rec["device"] == "meta":  # meta stays meta whatever map_location says, as in torch
            data = _meta_array(rec)
        elif data is None:
            arr = codec.restore_array(self.entry(rec["entry"]), rec["dtype"], rec["shape"])
            data = self._placed[key] = _place(arr, rec["device"], self.map_location)
        t = Tensor._wrap(data)
        if rec["kind"] == "parameter":
            from .nn.parameter import Parameter

            t = Parameter(t, requires_grad=rec["requires_grad"])
        else:
            t.requires_grad = bool(rec["requires_grad"])
        if "state" in rec:
            t.__dict__.update(codec.decode(rec["state"], self.tensor, self.entry))
        self._tensors[i] = t
        return t


def load(
    f: FileLike,
    map_location: MapLocation = None,
    pickle_module=None,
    *,
    weights_only: bool | None = True,
    mmap: bool | None = None,
    **pickle_load_args: Any,
) -> Any:
    r"""Load an object saved with :func:`save`, a safetensors file (as a dict of tensors), or
    a PyTorch checkpoint written by ``torch.save`` (zip or pre-1.6 legacy format), without
    importing torch. The format is recognised from the file's first bytes.

    PyTorch checkpoints are read with a restricted unpickler that accepts what
    ``torch.load(weights_only=True)`` accepts (tensors of every ember dtype, Parameters,
    storages and views, containers, primitive types, ``torch.Size``, dtypes, devices) plus the
    globals allowed with :func:`ember.serialization.add_safe_globals`; anything else is refused
    by name and nothing from the file runs.

    Args:
        f: a path or a readable binary file-like object.
        map_location: where tensors go: ``None`` (the device they were saved from), a device
            (``"cpu"``, ``"cuda:0"``, ``ember.device``), a dict mapping saved locations to
            devices (``{"cuda:1": "cuda:0"}``), or a callable ``fn(tensor, location)`` that
            returns the tensor to use (``None`` for the default), as in ``torch.load``.
        pickle_module: unpickling module for files that hold pickled objects.
        weights_only: if True (default), refuse files holding pickled objects, which could run
            arbitrary code. Pass False only for files from a trusted source (a PyTorch
            checkpoint loaded so warns).
        mmap: PyTorch zip checkpoints only: map storages from the file (copy-on-write) instead
            of reading them. ember/safetensors files are always read lazily by name.
        pickle_load_args: ``encoding`` for PyTorch checkpoints pickled by Python 2.
    """
    weights_only = True if weights_only is None else weights_only
    if weights_only and pickle_module is not None:
        raise RuntimeError("Can not safely load weights when explicit pickle_module is specified")
    unknown = set(pickle_load_args) - {"encoding"}
    if unknown:
        raise TypeError(f"load() got unexpected keyword arguments {sorted(unknown)}")
    f, kind = _sniff(f)
    if kind in ("zip", "legacy"):
        name = repr(os.fspath(f)) if isinstance(f, (str, os.PathLike)) else repr(f)
        return _torch_format.load_torch(
            kind,
            f,
            name,
            lambda arr, loc: _place(arr, loc, map_location),
            weights_only,
            mmap,
            pickle_load_args.get("encoding", "utf-8"),
        )
    if kind == "tar":
        raise RuntimeError(
            "ember: cannot load the file: it is in PyTorch's tar format (before "
            "0.4); re-save it with a recent torch.save"
        )
    with contextlib.ExitStack() as stack:
        src = sio.Source(f, stack)
        src.verify_header()
        meta = src.metadata
        if meta.get("format") != "ember":  # a plain safetensors file: its tensors, by name
            return _plain_state_dict(src, lambda a: Tensor._wrap(_place(a, "cpu", map_location)))
        if meta.get("ember.version") != _FORMAT_VERSION:
            raise src.error(f"unsupported ember file version {meta.get('ember.version')!r}")
        kind = meta.get("ember.kind")
        try:
            records = _check_records(json.loads(meta["ember.tensors"]))
            text = meta.get("ember.structure")
            if text is None and kind == "structure":
                text = src.array("structure").tobytes().decode()
            tree = json.loads(text) if kind == "structure" else None
        except (KeyError, ValueError, RecursionError, codec.FormatError) as exc:
            raise src.error(f"the file is corrupted ({type(exc).__name__}: {exc})") from None
        tensors = _Tensors(src, records, map_location)
        if kind == "pickle":
            blob = src.array("pickle").tobytes()
            if weights_only:
                # as torch.load(weights_only=True): only containers, primitive types and the
                # globals the user allowlisted (add_safe_globals / safe_globals) are rebuilt
                return _restricted_pickle_loads(blob, tensors.tensor, src.name, meta)
            return codec.pickle_loads(blob, tensors.tensor, pickle_module or pickle)
        if kind != "structure":
            raise src.error(f"unknown content kind {kind!r}")
        try:
            return codec.decode(tree, tensors.tensor, tensors.entry)
        except codec.FormatError as exc:
            raise src.error(f"the file is corrupted ({exc})") from None
        except RecursionError:
            raise src.error("the file is corrupted (its structure is nested too deeply)") from None


def _restricted_pickle_loads(blob: bytes, tensor_at, name: str, meta: dict):
    """Unpickle an ember ``pickle`` payload allowing only what weights-only loading allows."""
    from ._torch_pickle import RestrictedUnpickler

    def persistent(pid):
        if not (isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "ember.tensor"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        return tensor_at(pid[1])

    try:
        return RestrictedUnpickler(io.BytesIO(blob), persistent, weights_only=True).load()
    except pickle.UnpicklingError as exc:
        raise pickle.UnpicklingError(
            f"{name} holds pickled Python objects (saved from an object that needed pickling: "
            f"{meta.get('ember.pickle_reason')}). {exc}"
        ) from None


def _sniff(f: FileLike) -> tuple[FileLike, str]:
    """The file (a non-seekable stream is buffered) and its format (``_torch_format.sniff``)."""
    if isinstance(f, (str, os.PathLike)):
        try:
            with open(f, "rb") as fh:
                return f, _torch_format.sniff(fh.read(512))
        except IsADirectoryError:
            raise RuntimeError(f"ember: cannot load {os.fspath(f)!r}: it is a directory") from None
    if not hasattr(f, "read"):
        raise TypeError(
            f"ember.load expects a path or a readable binary file-like object, got "
            f"{type(f).__name__}"
        )
    if not _torch_format._seekable(f):
        f = io.BytesIO(f.read())
    pos = f.tell()
    head = f.read(512)
    f.seek(pos)
    return f, _torch_format.sniff(head)


_RECORD_FIELDS = {
    "entry": str,
    "dtype": str,
    "shape": list,
    "device": str,
    "requires_grad": bool,
    "kind": str,
}


def _check_records(records) -> list[dict]:
    """Tensor records as written by ``save``; anything else is a corrupted file."""
    if not isinstance(records, list):
        raise codec.FormatError("the tensor table is not a list")
    for rec in records:
        if not isinstance(rec, dict) or any(
            type(rec.get(k)) is not tp for k, tp in _RECORD_FIELDS.items()
        ):
            raise codec.FormatError(f"bad tensor record {rec!r}")
        if rec["kind"] not in ("tensor", "parameter"):
            raise codec.FormatError(f"unknown tensor kind {rec['kind']!r}")
    return records


def _plain_state_dict(src: sio.Source, make: Callable[[np.ndarray], Tensor]) -> dict:
    from .backend.dtype import from_numpy_dtype

    names = src.names
    with contextlib.suppress(ValueError, TypeError):
        order = json.loads(src.metadata.get("ember.order", "null"))
        if isinstance(order, list) and sorted(order) == sorted(names):
            names = order
    try:
        aliases = json.loads(src.metadata.get("ember.aliases", "{}"))
    except ValueError:
        aliases = {}
    out: dict[str, Tensor] = {}
    for name in names:
        target = aliases.get(name)
        if target in out:  # one array for keys that shared it when saved
            t = Tensor._wrap(out[target]._data)
            t._version_counter = out[target]._version_counter
            out[name] = t
            continue
        arr = src.array(name)
        try:
            from_numpy_dtype(arr.dtype)
        except TypeError:
            raise TypeError(
                f"ember: {src.name}: tensor {name!r} has dtype {arr.dtype}, which "
                "ember does not support"
            ) from None
        out[name] = make(arr)
    return out


def load_safetensors(path: FileLike, device: str | device = "cpu") -> dict[str, Tensor]:
    r"""Load a safetensors file (from ember or ``safetensors.torch.save_file``) as a dict.

    Args:
        path: a path or a readable binary file-like object.
        device: device for all tensors (default ``"cpu"``).
    """
    dev = _check_device(device)
    with contextlib.ExitStack() as stack:
        src = sio.Source(path, stack)
        src.verify_header()
        if src.metadata.get("format") == "ember":
            raise src.error(
                "it was written by ember.save, not save_safetensors; read it with ember.load"
            )
        return _plain_state_dict(src, lambda a: Tensor._wrap(_place(a, "cpu", dev)))
