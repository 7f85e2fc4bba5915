"""Writing PyTorch's zip checkpoint format without torch (``ember.save(...,
_use_new_zipfile_serialization=True)``).

The pickle names torch's globals (``torch._utils._rebuild_tensor_v2``, ``torch.FloatStorage``,
``torch.float16``, ...) by writing GLOBAL opcodes directly, so nothing of torch is imported.
Views of one NumPy array become views of one storage, as ``torch.save`` writes them.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

from . import _torch_rebuild as rb

__all__ = ["save_zip"]


# ---- writing the zip format ----------------------------------------------------------------
class _Global:
    """A torch global written into the pickle by name (ember never imports torch)."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle's save_reduce insists on a callable
        raise TypeError(f"{self.module}.{self.name} is a name written into a pickle")


_STORAGE_NAMES = {
    st.dtype.name: name
    for name, st in rb.STORAGE_TYPES.items()
    if isinstance(getattr(st, "dtype", None), rb._dtype) and name != "UntypedStorage"
}


def _root_and_geometry(arr: np.ndarray):
    """(root array, element offset, element strides) when ``arr`` is a plain view of a
    C-contiguous array of its dtype, else None (then it gets a storage of its own)."""
    root = arr
    while isinstance(root.base, np.ndarray):
        root = root.base
    if root is arr or root.dtype != arr.dtype or not root.flags.c_contiguous:
        return None
    item = arr.dtype.itemsize
    off = arr.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    if off % item or off < 0 or any(s % item or s < 0 for s in arr.strides):
        return None
    return root, off // item, tuple(s // item for s in arr.strides)


class _TorchPickler(pickle._Pickler):
    """Pickles ember objects as torch's ``torch.save`` would pickle their torch twins."""

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, protocol: int):
        super().__init__(file, protocol=protocol)
        self.storages: dict[str, np.ndarray] = {}
        self._key_of: dict[int, str] = {}
        self._globals: dict[tuple[str, str], _Global] = {}
        self._alive: list = []

    def save_torch_global(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[_Global] = save_torch_global

    def _global(self, module: str, name: str) -> _Global:
        g = self._globals.get((module, name))
        if g is None:
            g = self._globals[(module, name)] = _Global(module, name)
        return g

    def save(self, obj, save_persistent_id=True):
        from .backend.dtype import dtype

        if type(obj) is dtype:  # torch.float32 etc. are pickled by name
            obj = self._global("torch", obj.name)
        super().save(obj, save_persistent_id)

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return obj.pid
        return None

    def reducer_override(self, obj):
        from .backend.device import device
        from .tensor import Size, Tensor

        if isinstance(obj, Tensor):
            return self._tensor(obj)
        if type(obj) is device:
            args = (obj.type,) if obj.index is None else (obj.type, obj.index)
            return self._global("torch", "device"), args
        if type(obj) is Size:
            return self._global("torch", "Size"), (tuple(obj),)
        return NotImplemented

    def _storage(self, root: np.ndarray, device: str, typed: bool) -> _StorageRef:
        key = self._key_of.get(id(root))
        if key is None:
            key = self._key_of[id(root)] = str(len(self.storages))
            self.storages[key] = root.reshape(-1)
            self._alive.append(root)
        if typed:
            name = _STORAGE_NAMES[root.dtype.name]
            return _StorageRef(("storage", self._global("torch", name), key, device, root.size))
        return _StorageRef(
            ("storage", self._global("torch.storage", "UntypedStorage"), key, device, root.nbytes)
        )

    def _tensor(self, t):
        from .nn.parameter import Parameter
        from .tensor import Tensor

        if type(t) is Parameter:
            plain = Tensor._wrap(t._data)
            plain._version_counter = t._version_counter
            if t.__dict__:
                return (
                    self._global("torch._utils", "_rebuild_parameter_with_state"),
                    (plain, t.requires_grad, collections.OrderedDict(), dict(t.__dict__)),
                )
            return (
                self._global("torch._utils", "_rebuild_parameter"),
                (plain, t.requires_grad, collections.OrderedDict()),
            )
        if t.is_sparse:  # torch's own reduction of a sparse COO tensor (core/sparse/)
            parts = (t._indices(), t._values(), t.shape, t.is_coalesced())
            get_layout = self._global("torch.serialization", "_get_layout")
            return (
                self._global("torch._utils", "_rebuild_sparse_tensor"),
                (_Reduced((get_layout, ("torch.sparse_coo",))), parts),
            )
        if t.layout.name in ("sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc"):
            # torch's reduction of a compressed tensor (core/sparse/_compressed.py)
            parts = (t._cidx.detach(), t._pidx.detach(), t._values(), t.shape)
            get_layout = self._global("torch.serialization", "_get_layout")
            return (
                self._global("torch._utils", "_rebuild_sparse_tensor"),
                (_Reduced((get_layout, (f"torch.{t.layout.name}",))), parts),
            )
        if getattr(t, "is_quantized", False):
            return self._qtensor(t)
        if type(t) is not Tensor:
            raise pickle.PicklingError(f"cannot write a {type(t).__name__} in PyTorch's format")
        arr, device = t._data, str(t.device)
        if type(arr) is not np.ndarray:  # CuPy: a host copy, recorded on its device
            arr = arr.get()
        if arr.dtype.kind not in "biufc" and arr.dtype.name != "bfloat16":
            raise pickle.PicklingError(f"cannot write dtype {arr.dtype} in PyTorch's format")
        if not arr.dtype.isnative:
            arr = arr.astype(arr.dtype.newbyteorder("="))
        geom = _root_and_geometry(arr)
        if geom is None:  # not a view we can describe: a storage of its own
            root = arr.copy(order="C")
            geom = (root, 0, tuple(s // max(arr.itemsize, 1) for s in root.strides))
        root, offset, strides = geom
        typed = root.dtype.name in _STORAGE_NAMES
        ref = self._storage(root, device, typed)
        args = (
            ref,
            offset,
            tuple(arr.shape),
            strides,
            bool(t.requires_grad),
            collections.OrderedDict(),
        )
        if typed:
            return self._global("torch._utils", "_rebuild_tensor_v2"), args
        return (
            self._global("torch._utils", "_rebuild_tensor_v3"),
            args + (self._global("torch", root.dtype.name),),
        )

    def _qtensor(self, q):
        """torch's reduction of a quantized tensor: its codes in a ``QInt8Storage`` (etc.)
        and ``(scheme, scale, zero_point)`` or ``(scheme, scales, zero_points, axis)``."""
        from .tensor import Tensor

        name = rb._QSTORAGE.get(q._qdtype.name)
        if name is None:
            raise pickle.PicklingError(f"cannot write a {q._qdtype} tensor in PyTorch's format")
        codes = q._data if type(q._data) is np.ndarray else q._data.get()
        codes = np.ascontiguousarray(codes)
        key = self._key_of[id(codes)] = str(len(self.storages))
        self.storages[key] = codes.reshape(-1)
        self._alive.append(codes)
        pid = ("storage", self._global("torch", name), key, str(q.device), codes.size)
        if q._axis is None:
            params = (
                self._global("torch", "per_tensor_affine"),
                float(q._scale),
                int(q._zero_point),
            )
        else:  # torch writes per_channel_affine for both per-channel schemes
            params = (
                self._global("torch", "per_channel_affine"),
                Tensor._wrap(np.asarray(q._scale, np.float64)),
                Tensor._wrap(np.asarray(q._zero_point)),
                int(q._axis),
            )
        strides = tuple(s // max(codes.itemsize, 1) for s in codes.strides)
        args = (_StorageRef(pid), 0, tuple(codes.shape), strides, params, False)
        return self._global("torch._utils", "_rebuild_qtensor"), args + (collections.OrderedDict(),)


class _Reduced:
    """An object pickled as the given ``(callable, args)`` reduction."""

    __slots__ = ("reduction",)

    def __init__(self, reduction):
        self.reduction = reduction

    def __reduce__(self):
        return self.reduction


class _StorageRef:
    __slots__ = ("pid",)

    def __init__(self, pid):
        self.pid = pid


def save_zip(obj: Any, fh, archive: str = "archive", protocol: int = 2) -> None:
    """Write ``obj`` to the open binary file ``fh`` in torch's zip format (64-byte aligned
    storages, as torch writes them, so ``torch.load(..., mmap=True)`` works too)."""
    buf = io.BytesIO()
    pickler = _TorchPickler(buf, protocol)
    pickler.dump(obj)
    records = [
        ("data.pkl", buf.getvalue()),
        (".format_version", b"1"),
        (".storage_alignment", b"64"),
        ("byteorder", b"little"),
    ]
    records += [(f"data/{k}", v) for k, v in pickler.storages.items()]
    records += [("version", b"3\n"), (".data/serialization_id", os.urandom(20).hex().encode())]
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, data in records:
            info = zipfile.ZipInfo(f"{archive}/{name}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_STORED
            if isinstance(data, np.ndarray):
                data = data.view(np.uint8) if data.size else b""
            size = len(data) if not isinstance(data, np.ndarray) else data.nbytes
            zip64 = 20 if size * 1.05 > zipfile.ZIP64_LIMIT else 0
            start = fh.tell() + 30 + len(info.filename.encode()) + zip64
            pad = (-start) % 64
            if pad and pad < 4:
                pad += 64
            if pad:  # an extra field ("FB", torch's id) that aligns the data to 64 bytes
                info.extra = struct.pack("<HH", 0x4246, pad - 4) + b"Z" * (pad - 4)
            info.file_size = size
            with zf.open(info, "w", force_zip64=bool(zip64)) as out:
                out.write(memoryview(data).cast("B") if isinstance(data, np.ndarray) else data)


# torch's pre-1.6 stream: its magic number and protocol version, pickled before the object
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


class _LegacyPickler(_TorchPickler):
    """Storages as the legacy format names them: typed, counted in elements, no view."""

    def _storage(self, root: np.ndarray, device: str, typed: bool) -> _StorageRef:
        if not typed:  # an untyped storage travels as bytes
            root = root.reshape(-1).view(np.uint8)
        ref = super()._storage(root, device, True)
        return _StorageRef((*ref.pid, None))


def save_legacy(obj: Any, fh, protocol: int = 2) -> None:
    """Write ``obj`` to ``fh`` in torch's legacy format (``_use_new_zipfile_serialization=False``):
    five pickles (magic number, protocol version, system info, the object, the sorted storage
    keys), then each storage as a little-endian int64 element count and its bytes."""
    sys_info = {
        "protocol_version": _LEGACY_PROTOCOL,
        "little_endian": True,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    for head in (_LEGACY_MAGIC, _LEGACY_PROTOCOL, sys_info):
        pickle.dump(head, fh, protocol=protocol)
    pickler = _LegacyPickler(fh, protocol)
    pickler.dump(obj)
    keys = sorted(pickler.storages)
    pickle.dump(keys, fh, protocol=protocol)
    for key in keys:
        flat = np.ascontiguousarray(pickler.storages[key])
        fh.write(struct.pack("<q", flat.size))
        fh.write(memoryview(flat.view(np.uint8)))
