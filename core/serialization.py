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

Rebuilding tensors from a file's records and placing them by ``map_location`` is in
``core/_serialization_read.py`` (re-exported here).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _serialization_codec as codec
from . import _serialization_io as sio
from . import _torch_format
from ._serialization_read import (
    _RECORD_FIELDS,  # noqa: F401
    MapLocation,
    _check_device,
    _check_records,
    _meta_array,  # noqa: F401
    _place,
    _Tensors,
    default_restore_location,
)
from ._torch_format import get_unsafe_globals_in_checkpoint
from ._torch_pickle import add_safe_globals, clear_safe_globals, get_safe_globals, safe_globals
from .backend.device import device
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
    "default_restore_location",
]

FileLike = sio.FileLike
# PyTorch's type aliases for load's arguments (third-party code imports them to annotate)
FILE_LIKE = FileLike
MAP_LOCATION = Any
# torch.save's default pickle protocol (MONAI's StateCacher imports it as a default argument)
DEFAULT_PROTOCOL = 2


def normalize_storage_type(storage_type: type) -> type:
    """The ``ember`` storage class of that name (litgpt's incremental saver imports it)."""
    import ember

    return getattr(ember, storage_type.__name__)


def location_tag(storage: Any) -> str:
    """The device name a checkpoint records for ``storage`` (``"cpu"``, ``"cuda:0"``)."""
    return str(getattr(storage, "device", "cpu"))


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
            ember's format; ``False``: PyTorch's pre-1.6 legacy format.
    """
    if _use_new_zipfile_serialization is not None:
        legacy = not _use_new_zipfile_serialization
        return _torch_format.save_torch(obj, f, pickle_protocol, sio._atomic_write, legacy)
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
def _resolve_weights_only(weights_only: bool | None, pickle_module) -> bool:
    # torch.load's defaulting: True unless a pickle_module is given, then the two environment
    # switches (mmengine 0.10's resume needs TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 on torch >= 2.6)
    truthy = ("1", "y", "yes", "true")
    force_on = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in truthy
    force_off = os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in truthy
    if force_on and force_off:
        raise RuntimeError(
            "Only one of `TORCH_FORCE_WEIGHTS_ONLY_LOAD` or `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` "
            "should be set, but both were set."
        )
    if force_on:
        return True
    if weights_only is None:
        if force_off:
            warnings.warn(
                "Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected, since the "
                "`weights_only` argument was not explicitly passed to `ember.load`, forcing "
                "weights_only=False.",
                stacklevel=3,
            )
            return False
        return pickle_module is None
    return bool(weights_only)


def load(
    f: FileLike,
    map_location: MapLocation = None,
    pickle_module=None,
    *,
    weights_only: bool | None = None,
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
        weights_only: if True (the default unless ``pickle_module`` is given), refuse files
            holding pickled objects, which could run arbitrary code. Pass False only for files
            from a trusted source (a PyTorch checkpoint loaded so warns). As in torch, the
            environment variable ``TORCH_FORCE_WEIGHTS_ONLY_LOAD=1`` forces True and
            ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` makes an unset ``weights_only`` False.
        mmap: PyTorch zip checkpoints only: map storages from the file (copy-on-write) instead
            of reading them. ember/safetensors files are always read lazily by name.
        pickle_load_args: ``encoding`` for PyTorch checkpoints pickled by Python 2.
    """
    weights_only = _resolve_weights_only(weights_only, pickle_module)
    if weights_only and pickle_module is not None:
        raise RuntimeError("Can not safely load weights when explicit pickle_module is specified")
    unknown = set(pickle_load_args) - {"encoding"}
    if unknown:
        raise TypeError(f"load() got unexpected keyword arguments {sorted(unknown)}")
    f, kind = _sniff(f)
    if kind == "zip" and _is_torchscript(f):
        return _load_torchscript(f, map_location, weights_only)
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


def _is_torchscript(f: FileLike) -> bool:
    from .jit._torchscript_load import is_torchscript

    return is_torchscript(f)


def _load_torchscript(f: FileLike, map_location: MapLocation, weights_only: bool):
    """As ``torch.load`` of a ``torch.jit.save`` archive: refused with weights_only=True,
    else loaded by ``ember.jit.load`` with a warning."""
    import warnings

    if weights_only:
        raise RuntimeError(
            "Cannot use ``weights_only=True`` with TorchScript archives passed to "
            "``ember.load``. Load it with ``ember.jit.load`` instead (which runs the "
            "archive's TorchScript code: only for files from a trusted source)."
        )
    warnings.warn(
        "'ember.load' received a zip file that looks like a TorchScript archive dispatching "
        "to 'ember.jit.load' (call 'ember.jit.load' directly to silence this warning)",
        UserWarning,
        stacklevel=3,
    )
    from .jit import load as jit_load

    return jit_load(f, map_location=map_location)


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
