"""The object <-> JSON structure codec behind ``ember.save`` / ``ember.load``.

A saved object becomes a JSON *structure* in which every tensor (and NumPy array) is a
placeholder pointing at an *entry* of raw array data; the entries are written as safetensors
tensors by ``ember.serialization``. Decoding the structure only ever builds the plain types
listed in ``encode`` (no import, no call of anything named by the file), so it is safe on
untrusted files.

Objects the structure cannot express (modules, arbitrary classes, cycles) are pickled instead,
still with tensor data outside the pickle; such files load only with ``weights_only=False``.

Sharing: one entry per distinct array (by identity), one record per distinct Tensor object.
Two keys holding the same Tensor load as one Tensor; two Tensors sharing one array (e.g. a
parameter and its ``detach()``) load as two Tensors sharing one array.
"""

from __future__ import annotations

import base64
import collections
import math
import pickle
import sys

import numpy as np

from .backend.device import device
from .backend.dtype import dtype as _dtype_cls
from .backend.dtype import to_dtype
from .tensor import Size, Tensor

__all__ = ["Encoder", "NotPlain", "FormatError", "decode", "pickle_dumps", "pickle_loads"]


class NotPlain(Exception):
    """Raised while encoding when ``obj`` needs pickling; carries the offending type name."""

    def __init__(self, what: str):
        super().__init__(what)
        self.what = what


class FormatError(Exception):
    """The structure read from a file is malformed (the caller names the file)."""


_NATIVE = (str, int, bool, type(None))


def _parameter_class():
    # Only consulted when ember.nn is already imported: no Parameter can exist otherwise.
    mod = sys.modules.get("ember.nn.parameter")
    return None if mod is None else mod.Parameter


def _tensor_kind(t: Tensor) -> str | None:
    """ "tensor" / "parameter" for the classes a file may rebuild; None for other subclasses."""
    if type(t) is Tensor:
        return "tensor"
    param = _parameter_class()
    if param is not None and type(t) is param:
        return "parameter"
    return None


def storable_array(arr: np.ndarray) -> tuple[np.ndarray, str]:
    """A C-contiguous, native-endian array safetensors can hold, and its logical dtype name.

    safetensors' numpy writer reads ``ctypes.data`` for ``nbytes``: a strided view would be
    written wrongly, so every array is made contiguous here. complex128 (no safetensors type)
    is stored as its float64 pairs.
    """
    if type(arr) is not np.ndarray:  # a CuPy array: bring it to the host
        arr = arr.get()
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if not arr.flags.c_contiguous:  # (np.ascontiguousarray would turn 0-d into 1-d)
        arr = arr.copy(order="C")
    name = arr.dtype.name
    if arr.dtype == np.complex128:
        arr = arr.reshape(-1).view(np.float64)
    return arr, name


def _float(x: float):
    return x if math.isfinite(x) else {"$": "float", "v": repr(x)}


class Encoder:
    """Collects entries (array data) and tensor records while turning ``obj`` into JSON."""

    def __init__(self):
        self.entries: dict[str, np.ndarray] = {}
        self.tensors: list[dict] = []
        self._tensor_index: dict[int, int] = {}
        self._entry_of: dict[int, str] = {}
        self._alive: list = []  # keeps encoded objects alive so their ids stay unique
        self._path: set[int] = set()  # containers being encoded (a cycle needs pickling)

    # ---- data ----------------------------------------------------------------------------
    def entry(self, arr) -> tuple[str, str, list[int]]:
        """The entry name holding ``arr`` (stored once per array object), dtype name, shape."""
        name = self._entry_of.get(id(arr))
        if name is None:
            if arr.dtype.kind not in "biufc" and arr.dtype.name != "bfloat16":
                raise NotPlain(f"numpy array of dtype {arr.dtype}")
            name = f"d{len(self.entries)}"
            self.entries[name] = storable_array(arr)[0]
            self._entry_of[id(arr)] = name
            self._alive.append(arr)
        return name, arr.dtype.name, list(arr.shape)

    def tensor(self, t: Tensor) -> int:
        """The record index of tensor ``t`` (one record per Tensor object)."""
        idx = self._tensor_index.get(id(t))
        if idx is not None:
            return idx
        kind = _tensor_kind(t)
        if kind is None:
            raise NotPlain(f"{type(t).__module__}.{type(t).__qualname__}")
        state = getattr(t, "__dict__", None)
        if state:  # attributes of a Parameter (e.g. set by a framework); first, as they may fail
            if id(t) in self._path:
                raise NotPlain("a tensor whose attributes contain itself")
            self._path.add(id(t))
            try:
                state = self.encode(dict(state))
            finally:
                self._path.discard(id(t))
        if t.is_meta:  # no data: the record alone (torch writes no storage either)
            entry, dt, shape = "", t._data.dtype.name, list(t.shape)
        else:
            entry, dt, shape = self.entry(t._data)
        record = {
            "entry": entry,
            "dtype": dt,
            "shape": shape,
            "device": str(t.device),
            "requires_grad": bool(t.requires_grad),
            "kind": kind,
        }
        if state:
            record["state"] = state
        idx = len(self.tensors)
        self.tensors.append(record)
        self._tensor_index[id(t)] = idx
        self._alive.append(t)
        return idx

    # ---- structure -----------------------------------------------------------------------
    def encode(self, obj):
        """JSON for ``obj``: tensors, numbers, strings, None, bytes, dtypes, devices, Sizes,
        NumPy arrays/scalars, and (nested) list, tuple, dict, OrderedDict, set, frozenset."""
        tp = type(obj)
        if tp in _NATIVE:
            return obj
        if tp is float:
            return _float(obj)
        if isinstance(obj, Tensor):
            if obj.is_nested:  # its dense parts (core/nested/); leaf parts keep requires_grad
                return self._nested(obj)
            if obj.is_sparse:  # its parts (core/sparse/); a leaf keeps requires_grad
                vals = obj._vals if obj.is_leaf else obj._values()
                return {
                    "$": "sparse_coo",
                    "i": self.encode(obj._indices()),
                    "v": self.encode(vals),
                    "size": [int(s) for s in obj.shape],
                    "c": bool(obj.is_coalesced()),
                }
            if obj.layout.name in _COMPRESSED:  # its parts (core/sparse/_compressed.py)
                vals = obj._vals if obj.is_leaf else obj._values()
                return {
                    "$": "sparse_compressed",
                    "layout": obj.layout.name,
                    "c": self.encode(obj._cidx),
                    "p": self.encode(obj._pidx),
                    "v": self.encode(vals),
                    "size": [int(s) for s in obj.shape],
                }
            return {"$": "tensor", "i": self.tensor(obj)}
        if tp in (list, tuple, dict, collections.OrderedDict, set, frozenset):
            if id(obj) in self._path:
                raise NotPlain(f"a {tp.__name__} that contains itself")
            self._path.add(id(obj))
            try:
                return self._container(obj, tp)
            finally:
                self._path.discard(id(obj))
        if tp is complex:
            return {"$": "complex", "v": [_float(obj.real), _float(obj.imag)]}
        if tp in (bytes, bytearray):
            return {"$": tp.__name__, "v": base64.b64encode(obj).decode("ascii")}
        if tp is Size:
            return {"$": "size", "v": [int(s) for s in obj]}
        if tp is _dtype_cls:
            return {"$": "dtype", "v": obj.name}
        if tp is device:
            return {"$": "device", "v": str(obj)}
        if tp is np.ndarray:
            e, dt, shape = self.entry(obj)
            return {"$": "ndarray", "e": e, "dtype": dt, "shape": shape}
        if isinstance(obj, np.generic):
            arr = np.asarray(obj)
            self._alive.append(arr)
            e, dt, shape = self.entry(arr)
            return {"$": "npscalar", "e": e, "dtype": dt, "shape": shape}
        raise NotPlain(f"{tp.__module__}.{tp.__qualname__}")

    def _nested(self, obj):
        """A nested tensor as its dense parts: jagged values/offsets[/lengths] and the ragged
        dim, or the components of a strided one."""
        parts = obj._parts() if obj.is_leaf else [p.detach() for p in obj._parts()]
        if obj._comps is not None:
            return {"$": "nested_strided", "v": [self.encode(c) for c in parts]}
        node = {
            "$": "nested_jagged",
            "v": self.encode(parts[0]),
            "o": self.encode(obj._offsets),
            "r": int(obj._ragged_idx),
        }
        if obj._lengths is not None:
            node["l"] = self.encode(obj._lengths)
        return node

    def _container(self, obj, tp):
        enc = self.encode
        if tp is list:
            return [enc(v) for v in obj]
        if tp is tuple:
            return {"$": "tuple", "v": [enc(v) for v in obj]}
        if tp in (set, frozenset):
            return {"$": tp.__name__, "v": [enc(v) for v in obj]}
        return {
            "$": "dict" if tp is dict else "odict",
            "k": [enc(k) for k in obj],
            "v": [enc(v) for v in obj.values()],
        }


def restore_array(arr: np.ndarray, dtype_name: str, shape: list) -> np.ndarray:
    """Undo ``storable_array``'s complex128 packing and check the entry against its record."""
    if not all(type(d) is int and d >= 0 for d in shape):
        raise FormatError(f"bad shape {shape!r}")
    if dtype_name == "complex128" and arr.dtype == np.float64 and arr.size % 2 == 0:
        arr = arr.reshape(-1).view(np.complex128)
    elif arr.dtype.name != dtype_name:
        raise FormatError(f"entry has dtype {arr.dtype.name}, the structure says {dtype_name}")
    if arr.size != math.prod(shape):
        raise FormatError(f"entry has {arr.size} elements, the structure says shape {shape}")
    return arr.reshape(shape)


def _field(node: dict, key: str, tp: type):
    value = node.get(key)
    if type(value) is not tp:  # exact: JSON gives exactly int/str/list (and bool is no int)
        raise FormatError(f"{node.get('$')!r} node: bad or missing field {key!r}")
    return value


def _special_float(v):
    if v not in ("nan", "inf", "-inf"):
        raise FormatError(f"bad float {v!r}")
    return float(v)


def decode(node, tensor_at, entry_at):
    """Rebuild an object from its JSON; ``tensor_at(i)`` / ``entry_at(name)`` give tensors and
    raw arrays (both memoised by the caller so shared data stays shared).

    Malformed input raises FormatError; errors from the callbacks propagate unchanged (they may
    come from a user's ``map_location``)."""
    if isinstance(node, list):
        return [decode(v, tensor_at, entry_at) for v in node]
    if not isinstance(node, dict):
        if isinstance(node, float) and not math.isfinite(node):
            raise FormatError("non-finite number outside a float tag")
        return node
    tag = node.get("$")
    if tag == "tensor":
        return tensor_at(_field(node, "i", int))
    if tag in ("dict", "odict"):
        keys = [decode(k, tensor_at, entry_at) for k in _field(node, "k", list)]
        vals = [decode(v, tensor_at, entry_at) for v in _field(node, "v", list)]
        if len(keys) != len(vals):
            raise FormatError("dict node with mismatched keys and values")
        try:
            return (dict if tag == "dict" else collections.OrderedDict)(zip(keys, vals))
        except TypeError as exc:  # an unhashable key
            raise FormatError(f"dict node with a bad key ({exc})") from None
    if tag in _SEQUENCES:
        items = [decode(v, tensor_at, entry_at) for v in _field(node, "v", list)]
        try:
            return _SEQUENCES[tag](items)
        except TypeError as exc:
            raise FormatError(f"{tag} node with a bad item ({exc})") from None
    if tag == "float":
        return _special_float(_field(node, "v", str))
    if tag == "sparse_coo":
        return _decode_sparse(node, tensor_at, entry_at)
    if tag == "sparse_compressed":
        return _decode_compressed(node, tensor_at, entry_at)
    if tag in ("nested_jagged", "nested_strided"):
        from ._serialization_nested import decode_nested

        return decode_nested(node, tensor_at, entry_at)
    if tag == "complex":
        parts = _field(node, "v", list)
        if len(parts) != 2:
            raise FormatError("complex node needs two parts")
        re, im = (_special_float(p["v"]) if isinstance(p, dict) else p for p in parts)
        if not all(isinstance(p, (int, float)) for p in (re, im)):
            raise FormatError("complex node with non-numeric parts")
        return complex(re, im)
    if tag in ("bytes", "bytearray"):
        try:
            raw = base64.b64decode(_field(node, "v", str), validate=True)
        except ValueError as exc:
            raise FormatError(f"bad base64 in a bytes node ({exc})") from None
        return raw if tag == "bytes" else bytearray(raw)
    if tag == "size":
        dims = _field(node, "v", list)
        if not all(type(d) is int for d in dims):
            raise FormatError("size node with non-integer dims")
        return Size(dims)
    try:
        if tag == "dtype":
            return to_dtype(_field(node, "v", str))
        if tag == "device":
            return device(_field(node, "v", str))
    except (TypeError, RuntimeError, ValueError) as exc:
        raise FormatError(f"bad {tag} node ({exc})") from None
    if tag in ("ndarray", "npscalar"):
        arr = entry_at(_field(node, "e", str))
        arr = restore_array(arr, _field(node, "dtype", str), _field(node, "shape", list))
        return arr[()] if tag == "npscalar" else arr
    raise FormatError(f"unknown node tag {tag!r}")


_SEQUENCES = {"tuple": tuple, "set": set, "frozenset": frozenset}


_COMPRESSED = ("sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc")


def _decode_compressed(node, tensor_at, entry_at):
    from ._torch_misc import layout
    from .sparse import sparse_compressed_tensor

    name = _field(node, "layout", str)
    if name not in _COMPRESSED:
        raise FormatError(f"sparse_compressed node with a bad layout {name!r}")
    parts = [decode(_field(node, k, dict), tensor_at, entry_at) for k in ("c", "p", "v")]
    if not all(type(x) is Tensor for x in parts[:2]) or not isinstance(parts[2], Tensor):
        raise FormatError("sparse_compressed node without dense indices and values")
    try:
        t = sparse_compressed_tensor(
            *parts[:2], parts[2].detach(), _field(node, "size", list), layout=layout._by_name[name]
        )
    except (RuntimeError, TypeError, ValueError) as exc:
        raise FormatError(f"bad sparse_compressed node ({exc})") from None
    if parts[2].requires_grad:
        t.requires_grad_(True)
    return t


def _decode_sparse(node, tensor_at, entry_at):
    from .sparse import SparseTensor, sparse_coo_tensor

    idx = decode(_field(node, "i", dict), tensor_at, entry_at)
    vals = decode(_field(node, "v", dict), tensor_at, entry_at)
    size = _field(node, "size", list)
    dense = (type(x) is not SparseTensor and isinstance(x, Tensor) for x in (idx, vals))
    if not all(dense):
        raise FormatError("sparse_coo node without dense indices and values")
    try:
        t = sparse_coo_tensor(idx, vals.detach(), size, is_coalesced=_field(node, "c", bool))
    except (RuntimeError, TypeError, ValueError) as exc:
        raise FormatError(f"bad sparse_coo node ({exc})") from None
    if vals.requires_grad:
        t.requires_grad_(True)
    return t


# ---- whole-object pickling (weights_only=False) -------------------------------------------
def pickle_dumps(obj, encoder: Encoder, pickle_module=pickle, protocol: int = 2) -> bytes:
    """Pickle ``obj`` with plain Tensors and Parameters kept out of the pickle (as records)."""

    class _Pickler(pickle_module.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Tensor) and _tensor_kind(o) is not None:
                try:
                    return ("ember.tensor", encoder.tensor(o))
                except NotPlain:  # attributes that need pickling: let __reduce_ex__ do it
                    return None
            return None

    import io

    buf = io.BytesIO()
    _Pickler(buf, protocol=protocol).dump(obj)
    return buf.getvalue()


def pickle_loads(data: bytes, tensor_at, pickle_module=pickle):
    """Unpickle data written by ``pickle_dumps`` (runs code from the file: trusted files only)."""

    class _Unpickler(pickle_module.Unpickler):
        def persistent_load(self, pid):
            if not (isinstance(pid, tuple) and len(pid) == 2 and pid[0] == "ember.tensor"):
                raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
            return tensor_at(pid[1])

    import io

    return _Unpickler(io.BytesIO(data)).load()
