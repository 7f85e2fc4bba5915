"""Storages (``torch.UntypedStorage``, ``torch.TypedStorage``): read-only views of the memory
block a tensor's array lives in.

ember keeps each tensor's data in a NumPy or CuPy array; views share their base array's memory.
``t.untyped_storage()`` names the outermost array that owns that memory, so two tensors that
share memory report the same ``data_ptr()``, and ``nbytes()`` is the whole block's size, as in
torch. Libraries use exactly this to find tied weights (safetensors' ``storage_ptr`` /
``storage_size``, transformers' ``id_tensor_storage`` in ``save_pretrained``). Storages here are
descriptions, not a second way to write a tensor's memory: no ``resize_``, ``copy_`` or
element assignment.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

__all__ = [
    "StorageBase",
    "UntypedStorage",
    "TypedStorage",
    "untyped_storage",
    "typed_storage",
    "storage_offset",
    "set_",
]


def _root(a: Any) -> Any:
    """The outermost array whose memory ``a`` views (``a`` itself when it owns its data)."""
    while isinstance(getattr(a, "base", None), type(a)):
        a = a.base
    return a


def _block(a: Any) -> tuple[int, int]:
    """(address, size in bytes) of the memory block holding array ``a``."""
    if isinstance(a, np.ndarray):
        r = _root(a)
        return r.ctypes.data, r.nbytes
    mem = getattr(getattr(a, "data", None), "mem", None)  # cupy: the allocation behind it
    if mem is not None:
        return mem.ptr, mem.size
    return 0, 0  # meta tensors: no storage (torch's data_ptr is 0 there too)


def _byte_view(a: Any) -> Any:
    """The whole block behind NumPy array ``a`` as a 1-D uint8 array (shared, not copied)."""
    r = _root(a)
    if not (r.flags.c_contiguous or r.flags.f_contiguous):
        return None
    return r.reshape(-1, order="A").view(np.uint8)


class StorageBase:
    """``torch.StorageBase``: the base class of :class:`UntypedStorage` (libraries test
    ``isinstance(x, torch.StorageBase)`` to tell a storage from a tensor)."""


class UntypedStorage(StorageBase):
    """The bytes behind a tensor (``t.untyped_storage()``), or a file's bytes mapped into
    memory (``UntypedStorage.from_file``)."""

    # no __slots__: libraries set attributes on storages (safetensors keeps its mapping's
    # owner on the storage it reads from)

    def __init__(self, ptr: int, nbytes: int, device: Any, data: Any = None) -> None:
        self._ptr, self._nbytes, self._device = ptr, nbytes, device
        self._bytes = data  # a 1-D uint8 array over the block (CPU), when one can be made

    @classmethod
    def from_file(cls, filename: str, shared: bool = False, nbytes: int = 0) -> UntypedStorage:
        """Map ``nbytes`` bytes of ``filename`` (the whole file when 0): ``shared=True`` writes
        changes back to the file, ``False`` keeps them private, as torch's ``from_file``."""
        from .backend.device import CPU

        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"from_file(): filename must be a path, got {type(filename).__name__}")
        size = os.path.getsize(filename)
        if nbytes and nbytes > size:
            raise RuntimeError(
                f"from_file(): the file {os.fspath(filename)!r} holds {size} bytes, "
                f"fewer than the {nbytes} asked for"
            )
        n = nbytes or size
        if n == 0:
            return cls(0, 0, CPU, np.empty(0, np.uint8))
        arr = np.memmap(filename, dtype=np.uint8, mode="r+" if shared else "c", shape=(n,))
        return cls(arr.ctypes.data, n, CPU, arr)

    @property
    def device(self):
        return self._device

    @property
    def is_cuda(self) -> bool:
        return self._device.type == "cuda"

    def data_ptr(self) -> int:
        """The address of the block's first byte."""
        return self._ptr

    def nbytes(self) -> int:
        """The size of the block in bytes."""
        return self._nbytes

    def size(self) -> int:
        """The size in bytes (an untyped storage's elements are bytes)."""
        return self._nbytes

    def element_size(self) -> int:
        return 1

    def untyped(self) -> UntypedStorage:
        """Itself (torch's storages all answer ``untyped()``)."""
        return self

    def __len__(self) -> int:
        return self._nbytes

    def __sizeof__(self) -> int:
        # torch counts the bytes the storage holds (torchinfo's "Input size" is
        # ``sys.getsizeof(t.untyped_storage())`` summed over the inputs)
        return object.__sizeof__(self) + self._nbytes

    def _array(self) -> Any:
        if self._bytes is None:
            raise RuntimeError(f"{self!r}: its bytes cannot be read from here")
        return self._bytes

    def __getitem__(self, idx: int | slice) -> int | UntypedStorage:
        """A byte (``s[i]``) or a storage over a range of bytes (``s[a:b]``, sharing them)."""
        a = self._array()
        if isinstance(idx, slice):
            if idx.step not in (None, 1):
                raise RuntimeError("slices of a storage must have step 1")
            part = a[idx]
            return UntypedStorage(part.ctypes.data, part.nbytes, self._device, part)
        return int(a[idx])

    def tolist(self) -> list[int]:
        return self._array().tolist()

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UntypedStorage)
            and self._ptr == other._ptr
            and self._nbytes == other._nbytes
        )

    def __hash__(self) -> int:
        return hash((self._ptr, self._nbytes))

    def __repr__(self) -> str:
        return f"<UntypedStorage of {self._nbytes} bytes on {self._device}>"


class TypedStorage:
    """The block behind a tensor counted in its dtype's elements (``t.storage()``; deprecated in
    torch in favour of ``untyped_storage``, with the same warning)."""

    def __init__(self, untyped: UntypedStorage, dtype: Any) -> None:
        self._untyped, self.dtype = untyped, dtype

    @property
    def device(self):
        return self._untyped.device

    def untyped(self) -> UntypedStorage:
        return self._untyped

    def data_ptr(self) -> int:
        return self._untyped.data_ptr()

    def nbytes(self) -> int:
        return self._untyped.nbytes()

    def element_size(self) -> int:
        return self.dtype.itemsize

    def size(self) -> int:
        """The size in elements of ``dtype``."""
        return self._untyped.nbytes() // self.dtype.itemsize

    __len__ = size

    def __sizeof__(self) -> int:
        return object.__sizeof__(self) + self.nbytes()

    def __repr__(self) -> str:
        return f"<TypedStorage of {self.size()} {self.dtype} elements on {self.device}>"


def untyped_storage(self) -> UntypedStorage:
    """The memory block holding this tensor's elements, shared by all its views
    (``Tensor.untyped_storage``)."""
    a = self._data
    ptr, nbytes = _block(a)
    data = _byte_view(a) if isinstance(a, np.ndarray) else None
    return UntypedStorage(ptr, nbytes, self.device, data)


def typed_storage(self) -> TypedStorage:
    """``Tensor.storage()``: the block as elements of this tensor's dtype (deprecated in torch,
    which warns the same way; use ``untyped_storage``)."""
    warnings.warn(
        "TypedStorage is deprecated. It will be removed in the future and UntypedStorage will be "
        "the only storage class. This should only matter to you if you are using storages "
        "directly.  To access UntypedStorage directly, use tensor.untyped_storage() instead of "
        "tensor.storage()",
        UserWarning,
        stacklevel=2,
    )
    return TypedStorage(untyped_storage(self), self.dtype)


def storage_offset(self) -> int:
    """Where this tensor's first element sits in its storage, in elements
    (``Tensor.storage_offset``)."""
    ptr, _ = _block(self._data)
    if ptr == 0:
        return 0
    return (self.data_ptr() - ptr) // self._data.itemsize


def _elements(self: Any, source: Any) -> Any:
    """The whole storage behind ``source`` (a tensor or storage) as a 1-D array of this
    tensor's dtype, sharing memory (CPU)."""
    if isinstance(source, (UntypedStorage, TypedStorage)):
        raw = source.untyped()._array()
    else:
        raw = _byte_view(source._data) if isinstance(source._data, np.ndarray) else None
        if raw is None:
            raise RuntimeError(
                "set_: a view with storage_offset/size/stride needs a CPU source whose storage "
                "is one contiguous block"
            )
    itemsize = self._data.dtype.itemsize
    return raw[: raw.size - raw.size % itemsize].view(self._data.dtype)


def set_(self, source: Any = None, storage_offset: int = 0, size=None, stride=None):
    """``Tensor.set_``: this tensor now uses ``source``'s memory (in place).

    ``set_()`` makes it an empty 1-D tensor; ``set_(tensor)`` shares the tensor's memory,
    size and strides; ``set_(tensor_or_storage, storage_offset, size, stride=None)`` views that
    storage (stride defaults to contiguous). Not recorded by autograd: a source that requires
    grad must be set under ``no_grad``.
    """
    from numpy.lib.stride_tricks import as_strided

    from .autograd import grad_mode
    from .ops.inplace import check_inplace
    from .tensor import Tensor

    check_inplace(self)
    if source is None:
        new = self._data[:0].reshape(0).copy()
    elif isinstance(source, Tensor):
        if source._data.dtype != self._data.dtype:
            raise RuntimeError(
                f"set_: source has dtype {source.dtype} but this tensor has dtype {self.dtype}"
            )
        if source.requires_grad and grad_mode._state.enabled:
            raise RuntimeError(
                "set_: ember does not record set_ in the autograd graph; call it under "
                "no_grad() or with a detached source"
            )
        new = source._data if size is None else None
    elif isinstance(source, (UntypedStorage, TypedStorage)):
        new = None
        if size is None:
            size = (_elements(self, source).size - int(storage_offset),)
    else:
        raise TypeError(
            f"set_(): source must be a Tensor or a storage, not {type(source).__name__}"
        )
    if new is None:  # a strided view into the source's storage
        if size is None:
            raise TypeError("set_(): size is required with a storage_offset")
        size = tuple(int(n) for n in size)
        if stride is None:
            stride, acc = [], 1
            for n in reversed(size):
                stride.insert(0, acc)
                acc *= max(n, 1)
        stride, offset = tuple(int(s) for s in stride), int(storage_offset)
        if len(stride) != len(size) or offset < 0 or any(s < 0 for s in stride):
            raise RuntimeError(
                f"set_: bad geometry: size {list(size)}, stride {list(stride)}, "
                f"storage_offset {offset}"
            )
        flat = _elements(self, source)
        need = 0 if 0 in size else offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
        if need > flat.size:
            raise RuntimeError(
                f"set_: size {list(size)}, stride {list(stride)} and storage_offset {offset} "
                f"need {need} elements; the storage holds {flat.size}"
            )
        isz = flat.itemsize
        new = as_strided(flat[offset:], shape=size, strides=[s * isz for s in stride])
    self._data = new
    self._version_counter[0] += 1
    return self


def is_set_to(self, tensor: Any) -> bool:
    """``Tensor.is_set_to``: whether both tensors view the same memory the same way (one
    storage, the same storage offset, sizes and strides), as after ``self.set_(tensor)``."""
    if not hasattr(tensor, "_data"):
        raise TypeError(
            f"is_set_to(): argument 'tensor' must be Tensor, not {type(tensor).__name__}"
        )
    a, b = self._data, tensor._data
    return (
        _block(a)[0] == _block(b)[0]
        and self.data_ptr() == tensor.data_ptr()
        and a.dtype.itemsize == b.dtype.itemsize
        and a.shape == b.shape
        and a.strides == b.strides
    )
