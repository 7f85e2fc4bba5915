"""Ember stand-ins for the torch objects a ``torch.save`` pickle names: dtypes, storage types,
and the ``torch._utils._rebuild_*`` functions, building ember tensors as views of storages.

Every size, stride and offset read from a file is checked against the storage before a view
is made (a strided view past the end would read foreign memory).
"""

from __future__ import annotations

import math
import pickle

import numpy as np

from .backend.device import get_array_module
from .backend.dtype import ALL as _ALL_DTYPES
from .backend.dtype import bool_, uint8
from .backend.dtype import dtype as _dtype
from .tensor import Tensor

__all__ = ["TORCH_DTYPES", "STORAGE_TYPES", "REBUILD_FUNCTIONS", "Storage", "StorageType"]


class Unsupported:
    """A torch global that ember can name but not build (a float8 dtype, a qscheme, ...)."""

    def __init__(self, name: str, what: str):
        self.name, self.what = name, what

    def __repr__(self) -> str:
        return self.name

    def __call__(self, *args, **kwargs):
        raise pickle.UnpicklingError(
            f"the checkpoint holds {self.what} ({self.name}), which ember does not support"
        )


# torch dtype names (as ``str(torch.float32)`` minus "torch.") -> ember dtypes
TORCH_DTYPES: dict = {d.name: d for d in _ALL_DTYPES}
for _name in (
    "complex32",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "float4_e2m1fn_x2",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bits16",
    *(f"int{i}" for i in range(1, 8)),
    *(f"uint{i}" for i in range(1, 8)),
):
    TORCH_DTYPES[_name] = Unsupported(f"torch.{_name}", f"tensors of dtype torch.{_name}")
# quantized dtypes: torch stores one code per element for these three (quint4x2 / quint2x4
# pack several per byte; ember keeps one code per byte, so their storages are not read)
for _name in ("quint4x2", "quint2x4"):
    TORCH_DTYPES[_name] = Unsupported(f"torch.{_name}", "packed sub-byte quantized tensors")
TORCH_DTYPES["bool"] = bool_


def _quantized_tables() -> None:
    from . import quantized as _q  # (core/quantized.py imports tensor code that imports us)

    for name in ("qint8", "quint8", "qint32"):
        TORCH_DTYPES[name] = getattr(_q, name)
        STORAGE_TYPES[_QSTORAGE[name]].dtype = TORCH_DTYPES[name]
    QSCHEMES.update((name, _q._SCHEMES[name]) for name in QSCHEMES)


# torch's qscheme names -> ember's qscheme objects (filled by _quantized_tables)
QSCHEMES: dict = dict.fromkeys(
    (
        "per_tensor_affine",
        "per_tensor_symmetric",
        "per_channel_affine",
        "per_channel_symmetric",
        "per_channel_affine_float_qparams",
    )
)
_QSTORAGE = {"qint8": "QInt8Storage", "quint8": "QUInt8Storage", "qint32": "QInt32Storage"}
TENSOR_CLASSES = tuple(
    f"{p}Tensor"
    for p in ("Double", "Float", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool", "Half")
)


class StorageType:
    """``torch.FloatStorage`` and friends: the element type of a stored storage (None: bytes)."""

    def __init__(self, name: str, dtype):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


_STORAGE_DTYPES = {
    "Double": "float64",
    "Float": "float32",
    "Half": "float16",
    "BFloat16": "bfloat16",
    "Long": "int64",
    "Int": "int32",
    "Short": "int16",
    "Char": "int8",
    "Byte": "uint8",
    "Bool": "bool",
    "ComplexFloat": "complex64",
    "ComplexDouble": "complex128",
    "QInt8": "qint8",
    "QUInt8": "quint8",
    "QInt32": "qint32",
    "QUInt4x2": "quint4x2",
    "QUInt2x4": "quint2x4",
}
STORAGE_TYPES = {
    f"{k}Storage": StorageType(f"{k}Storage", TORCH_DTYPES.get(v))
    for k, v in _STORAGE_DTYPES.items()
}
STORAGE_TYPES["UntypedStorage"] = StorageType("storage.UntypedStorage", uint8)
STORAGE_TYPES["TypedStorage"] = StorageType("storage.TypedStorage", None)


def storage_dtype(storage_type):
    """The element dtype of a storage id's type (UntypedStorage: bytes, as in torch)."""
    if not isinstance(storage_type, StorageType) or storage_type.dtype is None:
        raise pickle.UnpicklingError(f"bad storage type {storage_type!r} in a storage id")
    if isinstance(storage_type.dtype, Unsupported):
        storage_type.dtype()  # raises, naming it
    return storage_type.dtype


class Storage:
    """A loaded storage: a 1-D array (NumPy or CuPy) of its element dtype, shared by views."""

    def __init__(self, data, dtype):
        self.data, self.dtype = data, dtype
        self.version = [0]  # one version counter per storage, as torch's views share one

    def typed(self, dtype) -> object:
        """The storage's memory as a 1-D array of ``dtype`` (bytes re-read, never copied)."""
        if isinstance(dtype, Unsupported):
            dtype()
        if not isinstance(dtype, _dtype):
            raise pickle.UnpicklingError(f"bad dtype {dtype!r} for a tensor")
        if dtype is self.dtype:
            return self.data
        raw = self.data.view(np.uint8) if self.data.dtype != np.uint8 else self.data
        if raw.size % dtype.itemsize:
            raise pickle.UnpicklingError(
                f"a storage of {raw.size} bytes cannot hold {dtype.name} elements"
            )
        return raw.view(dtype.np)


def _ints(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(type(v) is int and v >= 0 for v in value):
        raise pickle.UnpicklingError(f"bad tensor {what} {value!r} (expected non-negative ints)")
    return tuple(value)


def _view(storage, dtype, offset, size, stride):
    """A view of ``storage`` with torch's (element) offset, size and stride, bounds-checked."""
    if not isinstance(storage, Storage):
        raise pickle.UnpicklingError(f"expected a storage, got {type(storage).__name__}")
    flat = storage.typed(dtype)
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if type(offset) is not int or offset < 0 or len(size) != len(stride):
        raise pickle.UnpicklingError(
            f"bad tensor geometry: offset {offset!r}, size {size}, stride {stride}"
        )
    n = math.prod(size)
    if n == 0:
        return flat[:0].reshape(size)
    last = offset + sum((s - 1) * st for s, st in zip(size, stride))
    if last >= flat.size:
        raise pickle.UnpicklingError(
            f"tensor of size {list(size)}, stride {list(stride)} at offset {offset} does not fit "
            f"in its storage of {flat.size} elements: the file is corrupted"
        )
    contiguous, expect = True, 1
    for s, st in zip(reversed(size), reversed(stride)):
        if s != 1 and st != expect:
            contiguous = False
        expect *= s
    if contiguous:
        return flat[offset : offset + n].reshape(size)
    xp = get_array_module(flat)
    item = flat.dtype.itemsize
    return xp.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(st * item for st in stride)
    )


def _make(storage, dtype, offset, size, stride, requires_grad) -> Tensor:
    t = Tensor._wrap(_view(storage, dtype, offset, size, stride))
    t._version_counter = storage.version
    if requires_grad:
        t.requires_grad = bool(requires_grad)
    return t


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _make(storage, getattr(storage, "dtype", None), storage_offset, size, stride, False)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    return _make(
        storage, getattr(storage, "dtype", None), storage_offset, size, stride, requires_grad
    )


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    return _make(storage, dtype, storage_offset, size, stride, requires_grad)


def _rebuild_parameter(data, requires_grad, backward_hooks=None):
    from .nn.parameter import Parameter

    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError(f"a Parameter needs a tensor, got {type(data).__name__}")
    return Parameter(data, requires_grad=bool(requires_grad))


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    p = _rebuild_parameter(data, requires_grad, backward_hooks)
    if state:
        if not isinstance(state, dict):
            raise pickle.UnpicklingError("bad Parameter state")
        p.__dict__.update(state)
    return p


def _rebuild_device_tensor_from_cpu_tensor(data, dtype, device, requires_grad):
    if not isinstance(data, Tensor):
        raise pickle.UnpicklingError("expected a tensor")
    t = data.to(dtype=dtype)
    t.requires_grad = bool(requires_grad)
    return t


def rebuild_from_type_v2(func, new_type, args, state):
    """``torch._tensor._rebuild_from_type_v2``: a tensor of a (sub)class, with attributes."""
    from .nn.parameter import Parameter

    if not isinstance(args, tuple):
        raise pickle.UnpicklingError("bad arguments to _rebuild_from_type_v2")
    ret = func(*args)
    if new_type is Parameter and type(ret) is not Parameter:
        ret = Parameter(ret, requires_grad=ret.requires_grad)
    elif new_type is not Tensor and new_type is not Parameter:
        raise pickle.UnpicklingError(f"ember cannot rebuild a tensor of class {new_type!r}")
    if state:
        if isinstance(state, tuple):  # (dict state, slot state)
            state = state[0]
        if not hasattr(ret, "__dict__"):
            raise pickle.UnpicklingError(
                "the checkpoint sets attributes on a plain tensor, which ember tensors cannot hold"
            )
        ret.__dict__.update(state or {})
    return ret


def layout(name):
    return name


#: torch pickles ``torch.sparse_coo`` as ``torch.serialization._get_layout("torch.sparse_coo")``
SPARSE_COO_LAYOUT = "torch.sparse_coo"


def _rebuild_sparse_tensor(layout, data):
    # torch.Tensor._reduce_ex_internal: (indices, values, size[, is_coalesced]) for sparse_coo
    if layout in ("torch.sparse_csr", "torch.sparse_csc", "torch.sparse_bsr", "torch.sparse_bsc"):
        # (compressed_indices, plain_indices, values, size): core/sparse/_compressed.py
        from ._torch_misc import layout as _layouts
        from .sparse import sparse_compressed_tensor

        lay = _layouts._by_name[layout[len("torch.") :]]
        return sparse_compressed_tensor(*data[:3], data[3], layout=lay)
    if layout != SPARSE_COO_LAYOUT:
        raise pickle.UnpicklingError(f"ember.load: sparse layout {layout!r} is not supported")
    from .sparse import sparse_coo_tensor

    indices, values, size = data[:3]
    coalesced = data[3] if len(data) > 3 else None
    return sparse_coo_tensor(indices, values, size, is_coalesced=coalesced)


def _rebuild_qtensor(
    storage, storage_offset, size, stride, quantizer_params, requires_grad, backward_hooks
):
    """torch's quantized tensor: the integer codes as a view of a quantized storage, and
    ``quantizer_params`` = ``(scheme, scale, zero_point)`` or ``(scheme, scales,
    zero_points, axis)``."""
    from .quantized import QTensor

    qdtype = getattr(storage, "dtype", None)
    if qdtype not in (TORCH_DTYPES["qint8"], TORCH_DTYPES["quint8"], TORCH_DTYPES["qint32"]):
        raise pickle.UnpicklingError(
            f"a quantized tensor needs a quantized storage, got {storage!r}"
        )
    if not isinstance(quantizer_params, tuple) or not quantizer_params:
        raise pickle.UnpicklingError(f"bad quantizer parameters {quantizer_params!r}")
    scheme, rest = quantizer_params[0], quantizer_params[1:]
    codes = _view(storage, qdtype, storage_offset, size, stride)
    if scheme is QSCHEMES["per_tensor_affine"] and len(rest) == 2:
        scale, zero_point = rest
        if not isinstance(scale, float) or type(zero_point) is not int:
            raise pickle.UnpicklingError(f"bad per-tensor scale / zero point {rest!r}")
        return QTensor._make(codes, qdtype, scheme, scale, zero_point)
    per_channel = (QSCHEMES["per_channel_affine"], QSCHEMES["per_channel_affine_float_qparams"])
    if scheme in per_channel and len(rest) == 3:
        scales, zero_points, axis = rest
        if not all(isinstance(v, (Tensor, list)) for v in (scales, zero_points)):
            raise pickle.UnpicklingError(f"bad per-channel scales / zero points {rest!r}")
        scales = np.asarray(scales._data if isinstance(scales, Tensor) else scales, np.float64)
        zps = zero_points._data if isinstance(zero_points, Tensor) else zero_points
        if (
            type(axis) is not int
            or not 0 <= axis < codes.ndim
            or scales.shape != (codes.shape[axis],)
            or np.shape(zps) != scales.shape
        ):
            raise pickle.UnpicklingError(
                f"per-channel parameters of shape {scales.shape} along axis {axis!r} do not "
                f"fit a quantized tensor of size {list(codes.shape)}"
            )
        # torch pickles float-qparams tensors (embeddings) as per_channel_affine too: their
        # float zero points tell them apart, as torch's own rebuild does
        if scheme is per_channel[1] or np.asarray(zps).dtype.kind == "f":
            scheme, zdtype = per_channel[1], np.float64
        else:
            zdtype = np.int64
        return QTensor._make(codes, qdtype, scheme, scales, np.asarray(zps, zdtype), axis)
    raise pickle.UnpicklingError(f"unsupported quantization scheme {scheme!r} in a checkpoint")


def legacy_tensor_class(name: str) -> Unsupported:
    return Unsupported(f"torch.{name}", "a legacy typed tensor class")


REBUILD_FUNCTIONS = {
    "_rebuild_tensor": _rebuild_tensor,
    "_rebuild_tensor_v2": _rebuild_tensor_v2,
    "_rebuild_tensor_v3": _rebuild_tensor_v3,
    "_rebuild_parameter": _rebuild_parameter,
    "_rebuild_parameter_with_state": _rebuild_parameter_with_state,
    "_rebuild_device_tensor_from_cpu_tensor": _rebuild_device_tensor_from_cpu_tensor,
    "_rebuild_qtensor": _rebuild_qtensor,
    "_rebuild_sparse_tensor": _rebuild_sparse_tensor,
    "_rebuild_meta_tensor_no_storage": Unsupported(
        "torch._utils._rebuild_meta_tensor_no_storage", "meta tensors"
    ),
    "_rebuild_nested_tensor": Unsupported("torch._utils._rebuild_nested_tensor", "nested tensors"),
    "_rebuild_wrapper_subclass": Unsupported(
        "torch._utils._rebuild_wrapper_subclass", "tensor subclasses"
    ),
    "_rebuild_device_tensor_from_numpy": Unsupported(
        "torch._utils._rebuild_device_tensor_from_numpy", "tensors rebuilt from NumPy"
    ),
}
