"""Tensor dunders and protocol attributes that behave as PyTorch's (family ``misc``).

Formatting, NumPy interplay (``__array_wrap__``), ``in`` and ``reversed``, DLPack exchange,
and the small predicates and attributes real programs read (``is_cpu``, ``layout``,
``output_nr``, ``get_device``, ...). They are bound onto :class:`Tensor` from the ``# <misc>``
section of ``core/_tensor_methods.py``; the ``ember.*`` spellings are re-exported by
``core/_torch_misc.py``.
"""

from __future__ import annotations

import enum
import mmap
import numbers

import numpy as np

from .backend import _cupy
from .backend.dtype import complex64, complex128, int8, to_dtype
from .tensor import Tensor


# ---- formatting and NumPy --------------------------------------------------------------
def __format__(self: Tensor, format_spec: str) -> str:
    """``f"{loss:.4f}"`` formats a 0-d tensor's value; other tensors format as ``str``."""
    if self._data.ndim == 0:
        return self.item().__format__(format_spec)
    return object.__format__(self, format_spec)


def __array__(self: Tensor, dtype=None, copy: bool | None = None) -> np.ndarray:
    """The data as a NumPy array: shared memory on the CPU unless ``dtype`` or ``copy=True``
    asks for a copy (``copy=False`` raises where one is unavoidable, as NumPy 2 specifies)."""
    data = self._data
    a = data if type(data) is np.ndarray else data.get()
    if dtype is not None:
        a = a.astype(dtype, copy=False)
    if copy is False and a is not data:
        raise ValueError("Unable to avoid copy while creating an array as requested.")
    return a.copy() if copy and a is data else a


def __array_wrap__(self: Tensor, array, context=None, return_scalar: bool = False) -> Tensor:
    """NumPy ufuncs on a tensor (``np.exp(t)``) return a tensor, as with PyTorch."""
    return Tensor._wrap(np.asarray(array))


# ---- Python containers -----------------------------------------------------------------
def __contains__(self: Tensor, element) -> bool:
    if not isinstance(element, (Tensor, numbers.Number)):
        raise RuntimeError(
            "Tensor.__contains__ only supports Tensor or scalar, but you passed in a "
            f"{type(element)}."
        )
    from .ops import any as _any
    from .ops import eq

    return bool(_any(eq(self, element)).item())


def __reversed__(self: Tensor) -> Tensor:
    """The tensor flipped along dim 0 (a 0-d tensor is returned as is)."""
    if self._data.ndim == 0:
        return self
    from .ops import flip

    return flip(self, 0)


def __setstate__(self: Tensor, state) -> None:
    """Restore from a legacy pickle state: ``(data, requires_grad, ...)`` or a dict."""
    if self.grad_fn is not None:
        raise RuntimeError("__setstate__ can be only called on leaf Tensors")
    if isinstance(state, dict):
        state = (state.get("data"), state.get("requires_grad", False))
    data, requires_grad = state[0], (state[1] if len(state) > 1 else False)
    if data is not None:
        self._data = data._data if isinstance(data, Tensor) else np.asarray(data)
    self.requires_grad = bool(requires_grad)
    self.grad = None


# ---- DLPack ------------------------------------------------------------------------------
class DLDeviceType(enum.IntEnum):
    """The DLPack device codes (``Tensor.__dlpack_device__()[0]``)."""

    kDLCPU = 1
    kDLCUDA = 2
    kDLCUDAHost = 3
    kDLOpenCL = 4
    kDLVulkan = 7
    kDLMetal = 8
    kDLVPI = 9
    kDLROCM = 10
    kDLCUDAManaged = 13
    kDLOneAPI = 14


def __dlpack__(self: Tensor, *, stream=None, max_version=None, dl_device=None, copy=None):
    """Export as a DLPack capsule (zero copy), for ``np.from_dlpack``/``cupy.from_dlpack``."""
    if self.requires_grad:
        raise RuntimeError("Can't export tensors that require gradient, use tensor.detach()")
    kwargs = {
        k: v
        for k, v in (
            ("stream", stream),
            ("max_version", max_version),
            ("dl_device", dl_device),
            ("copy", copy),
        )
        if v is not None
    }
    return self._data.__dlpack__(**kwargs)


def __dlpack_device__(self: Tensor) -> tuple:
    kind, index = self._data.__dlpack_device__()
    return DLDeviceType(int(kind)), int(index)


class _Capsule:
    """Adapts a bare DLPack capsule (legacy ``to_dlpack`` output) to the ``__dlpack__`` protocol."""

    def __init__(self, capsule, device):
        self._capsule, self._device = capsule, device

    def __dlpack__(self, **kwargs):
        return self._capsule

    def __dlpack_device__(self):
        return self._device


def from_dlpack(ext_tensor) -> Tensor:
    """A tensor sharing memory with any DLPack producer (NumPy, CuPy, JAX, PyTorch ...)."""
    if isinstance(ext_tensor, Tensor):
        return ext_tensor
    if not hasattr(ext_tensor, "__dlpack__"):  # a capsule: assume host memory
        if _cupy.cupy is not None:  # pragma: no cover - GPU
            return Tensor._wrap(_cupy.cupy.from_dlpack(_Capsule(ext_tensor, (2, 0))))
        ext_tensor = _Capsule(ext_tensor, (1, 0))
    kind = int(ext_tensor.__dlpack_device__()[0])
    if kind in (DLDeviceType.kDLCPU, DLDeviceType.kDLCUDAHost):
        return Tensor._wrap(np.from_dlpack(ext_tensor))
    return Tensor._wrap(_cupy.require_cupy().from_dlpack(ext_tensor))  # pragma: no cover


def to_dlpack(tensor: Tensor):
    """A DLPack capsule of ``tensor`` (legacy interface; prefer passing the tensor itself)."""
    return tensor.__dlpack__()


# ---- attributes and predicates -----------------------------------------------------------
def _is_cpu(self: Tensor) -> bool:
    return type(self._data) is np.ndarray


def _get_device(self: Tensor) -> int:
    """-1 for a CPU tensor, else the CUDA device index."""
    return -1 if type(self._data) is np.ndarray or self.is_meta else self.device.index


def _layout(self: Tensor):
    from ._torch_misc import strided

    return strided


def is_nonzero(input: Tensor) -> bool:
    """Whether the single element of ``input`` is non-zero.

    Raises:
        RuntimeError: ``input`` has no element or more than one.
    """
    n = input._data.size
    if n == 0:
        raise RuntimeError("Boolean value of Tensor with no values is ambiguous")
    if n > 1:
        raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
    return bool(input._data.reshape(()))


def is_same_size(input: Tensor, other: Tensor) -> bool:
    """Whether ``input`` and ``other`` have the same shape."""
    return input._data.shape == other._data.shape


def is_signed(input: Tensor) -> bool:
    """Whether the dtype of ``input`` is signed (every dtype but the unsigned integers and
    ``bool``)."""
    return input.dtype.is_signed


def is_complex(input: Tensor) -> bool:
    """Whether the dtype of ``input`` is complex."""
    return input._data.dtype.kind == "c"


def is_inference(input: Tensor) -> bool:
    """False: ember has no separate inference tensors (inference_mode only disables grad)."""
    return False


def is_distributed(input: Tensor) -> bool:
    """Always False: ember tensors are never distributed (kept for PyTorch's API)."""
    return False


def get_device(input: Tensor) -> int:
    """The CUDA device index of ``input``, or -1 for a CPU tensor."""
    return _get_device(input)


def _is_pinned(self: Tensor, device=None) -> bool:
    """True for a host tensor in CUDA page-locked memory (``pin_memory()``'s result)."""
    if _cupy.cupy is None or type(self._data) is not np.ndarray:
        return False
    base = self._data  # pragma: no cover - GPU
    pinned = _cupy.cupy.cuda.PinnedMemoryPointer  # pragma: no cover
    while base is not None:  # pragma: no cover
        if isinstance(base, pinned):
            return True
        base = getattr(base, "base", None)
    return False  # pragma: no cover


def _pin_memory(self: Tensor, device=None) -> Tensor:
    """A copy in page-locked host memory; like PyTorch's CPU build, an error without CUDA."""
    if _cupy.cupy is None:
        raise RuntimeError("Cannot access accelerator device when none is available.")
    if _is_pinned(self):  # pragma: no cover - GPU
        return self
    from .utils.data._pin_memory import _pin_tensor  # pragma: no cover

    out = _pin_tensor(self)  # pragma: no cover
    out.requires_grad = self.requires_grad  # pragma: no cover
    return out  # pragma: no cover


def _record_stream(self: Tensor, stream) -> None:
    """Mark this CUDA tensor as used by ``stream``: its memory is not reused before the work
    queued there so far has finished (prefetching on a side stream, then reading on another)."""
    if self.device.type != "cuda":
        raise RuntimeError(f"record_stream expects a CUDA tensor, got one on {self.device}")
    from .cuda.streams import _hold_until_done  # pragma: no cover - GPU

    _hold_until_done(stream, self._data)  # pragma: no cover - GPU


def _is_shared(self: Tensor) -> bool:
    """True when the data lives in a shared (``share_memory_``) mapping."""
    base = self._data
    while base is not None:
        if isinstance(base, mmap.mmap):
            return True
        base = getattr(base, "base", None)
    return type(self._data) is not np.ndarray  # CUDA tensors count as shared, as in PyTorch


def _share_memory_(self: Tensor) -> Tensor:
    """Move the data into a shared mapping: inherited by forked workers, and passed to
    ``spawn``-ed ones by multiprocessing's pickler as the same memory (core/_shared_memory.py).

    Unlike PyTorch, existing views of the tensor keep the old memory: ember has no storage
    object to swap underneath them.
    """
    if _is_shared(self):
        return self
    from ._shared_memory import shared_array

    self._data = shared_array(self._data)
    return self


def _qualname(cls: type) -> str:
    """A class's name as torch's errors print it (``float``, ``numpy.float32``)."""
    mod = cls.__module__
    bare = mod == "builtins" or mod.split(".")[0] == "ember"
    return cls.__name__ if bare else f"{mod}.{cls.__name__}"


def _type(self: Tensor, dtype=None, non_blocking: bool = False, **kwargs):
    """``t.type()`` names the legacy type (``'ember.FloatTensor'``); ``t.type(T)`` casts to a
    dtype, a legacy type (``ember.DoubleTensor``) or its name (``'torch.cuda.LongTensor'``)."""
    from ._legacy_types import tensortype
    from ._torch_misc import typename

    if dtype is None:
        return typename(self)
    device = None
    if isinstance(dtype, str) and dtype.rsplit(".", 1)[-1].endswith("Tensor"):
        from ._legacy_types import _NAMES

        name = dtype.rsplit(".", 1)[-1]
        if name not in _NAMES:
            raise ValueError(f"invalid type: '{dtype}'")
        device = "cuda" if ".cuda." in dtype else "cpu"
        dtype = _NAMES[name]
    elif isinstance(dtype, tensortype):
        device = dtype._device_type
        dtype = dtype.dtype
    elif dtype is Tensor:
        # `Tensor = torch.cuda.FloatTensor if cuda else torch.Tensor; x.type(Tensor)`: the
        # class stands for the default tensor type (a CPU tensor of the default dtype)
        from .backend.dtype import get_default_dtype

        device, dtype = "cpu", get_default_dtype()
    elif isinstance(dtype, (str, type)):
        # torch accepts only dtypes and tensor types here: `t.type(float)`, `t.type("float32")`
        # and `t.type(np.float32)` raise (they are not shorthand for a dtype as in `.to`)
        name = dtype if isinstance(dtype, str) else _qualname(dtype)
        raise ValueError(f"invalid type: '{name}'")
    try:
        dt = to_dtype(dtype)
    except TypeError:
        raise TypeError("dtype must be a type, str, or dtype object") from None
    if device is not None and self.device.type != device:
        return self.to(device=device, dtype=dt)
    return self if dt is self.dtype else self.to(dt)


def _cast(dt):
    def method(self: Tensor, memory_format=None) -> Tensor:
        return self.to(dt)

    return method


PROPERTIES = {
    "is_cpu": property(_is_cpu, doc="True when the tensor is in host memory."),
    "is_sparse": property(lambda self: False, doc="False: ember tensors are dense."),
    "is_quantized": property(lambda self: False, doc="False: ember has no quantized tensors."),
    "is_mkldnn": property(lambda self: False, doc="False: no MKL-DNN layout in ember."),
    # Device-family predicates scripts test before choosing a code path
    # (``if x.is_cuda or x.is_xpu: ...``): ember tensors live on the CPU or a CUDA device only.
    **{
        f"is_{kind}": property(lambda self: False, doc=f"False: ember has no {kind} device.")
        for kind in ("xpu", "mps", "ipu", "xla", "vulkan", "maia", "mtia", "hpu")
    },
    "is_nested": property(lambda self: False, doc="False for dense tensors (see ember.nested)."),
    "is_sparse_csr": property(lambda self: False, doc="False: ember tensors are dense."),
    "output_nr": property(
        lambda self: self._output_nr, doc="Which output of its ``grad_fn`` this tensor is."
    ),
    # torch's address of the C++ TensorImpl: one per tensor object (Pyro's ``pyro.module``
    # compares it to tell whether the param store handed back the module's own parameter)
    "_cdata": property(lambda self: id(self), doc="An id unique to this tensor object."),
    "layout": property(_layout, doc="The memory layout: always ``ember.strided``."),
}

METHODS = {
    "__format__": __format__,
    "__array__": __array__,
    "__array_wrap__": __array_wrap__,
    "__contains__": __contains__,
    "__reversed__": __reversed__,
    "__setstate__": __setstate__,
    "__dlpack__": __dlpack__,
    "__dlpack_device__": __dlpack_device__,
    "get_device": _get_device,
    "is_nonzero": is_nonzero,
    "is_same_size": is_same_size,
    "is_signed": is_signed,
    "is_inference": is_inference,
    "is_distributed": is_distributed,
    "is_pinned": _is_pinned,
    "pin_memory": _pin_memory,
    "record_stream": _record_stream,
    "is_shared": _is_shared,
    "share_memory_": _share_memory_,
    "type": _type,
    "char": _cast(int8),
    "cfloat": _cast(complex64),
    "cdouble": _cast(complex128),
    **PROPERTIES,
}
