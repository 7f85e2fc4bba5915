"""Creation breadth: ``Tensor.new_*``, strided/permuted empties, ``range``, ``asarray``,
``frombuffer``, ``scalar_tensor``, tril/triu indices, ``resize_`` and
the CPU callables ``apply_``/``map_``."""

from __future__ import annotations

import builtins
import math
import warnings

import numpy as np

from .autograd import grad_mode
from .backend import _cupy
from .backend.device import CPU, get_array_module
from .backend.dtype import get_default_dtype, int64, to_dtype
from .creation import _size, _to_array, empty, full, ones, tensor, zeros
from .ops.inplace import check_inplace
from .tensor import Tensor


def _done(t: Tensor, requires_grad: bool) -> Tensor:
    return t.requires_grad_(True) if requires_grad else t


def _sizes(sizes, size=None):
    """The shape of ``new_empty(2, 3)``, ``new_empty((2, 3))`` or ``new_empty(size=(2, 3))``."""
    return _size(sizes, size)


# ---- Tensor.new_* -------------------------------------------------------------------------
def new_tensor(
    self, data, *, dtype=None, device=None, requires_grad=False, layout=None, pin_memory=False
) -> Tensor:
    if isinstance(data, Tensor):
        warnings.warn(
            "To copy construct from a tensor, it is recommended to use "
            "sourceTensor.detach().clone() or "
            "sourceTensor.detach().clone().requires_grad_(True), rather than "
            "tensor.new_tensor(sourceTensor).",
            UserWarning,
            stacklevel=2,
        )
        data = data.detach()
    return tensor(
        data, dtype=dtype or self.dtype, device=device or self.device, requires_grad=requires_grad
    )


def new_empty(
    self,
    *sizes,
    size=None,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    return empty(
        _sizes(sizes, size),
        dtype=dtype or self.dtype,
        device=device or self.device,
        requires_grad=requires_grad,
    )


def new_zeros(
    self,
    *sizes,
    size=None,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    return zeros(
        _sizes(sizes, size),
        dtype=dtype or self.dtype,
        device=device or self.device,
        requires_grad=requires_grad,
    )


def new_ones(
    self,
    *sizes,
    size=None,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    return ones(
        _sizes(sizes, size),
        dtype=dtype or self.dtype,
        device=device or self.device,
        requires_grad=requires_grad,
    )


def new_full(
    self,
    size,
    fill_value,
    *,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    return full(
        size,
        fill_value,
        dtype=dtype or self.dtype,
        device=device or self.device,
        requires_grad=requires_grad,
    )


def new_empty_strided(
    self,
    size,
    stride,
    *,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    return empty_strided(
        size,
        stride,
        dtype=dtype or self.dtype,
        device=device or self.device,
        requires_grad=requires_grad,
    )


def new(self, *args, **kwargs) -> Tensor:
    """The legacy constructor: ``x.new()`` (empty), ``x.new(2, 3)`` (uninitialised),
    ``x.new([1, 2])`` (data): always ``x``'s dtype and device."""
    device = kwargs.pop("device", None) or self.device
    if kwargs:
        raise TypeError(f"new() received an invalid combination of arguments: {sorted(kwargs)}")
    if not args:
        return empty(0, dtype=self.dtype, device=device)
    if len(args) == 1 and isinstance(args[0], Tensor):
        return args[0].detach()
    if builtins.all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in args):
        return empty(tuple(int(a) for a in args), dtype=self.dtype, device=device)
    if len(args) == 1 and isinstance(args[0], tuple(_size_types())):
        return empty(tuple(args[0]), dtype=self.dtype, device=device)
    return tensor(args[0], dtype=self.dtype, device=device)


def _size_types():
    from .tensor import Size

    return (Size,)


# ---- strided / permuted empties, scalars, ranges ------------------------------------------
def empty_strided(
    size, stride, *, dtype=None, layout=None, device=None, requires_grad=False, pin_memory=False
) -> Tensor:
    """An uninitialised (zero-filled) tensor whose ``stride()`` is ``stride``."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise RuntimeError("mismatch in length of strides and shape")
    need = 0 if 0 in size else 1 + builtins.sum((n - 1) * s for n, s in zip(size, stride))
    store = zeros(need, dtype=dtype, device=device)
    if store.is_meta:  # no memory to stride over: a meta tensor of that size, as torch's
        return _done(empty(size, dtype=dtype, device=device), requires_grad)
    xp = get_array_module(store._data)
    item = store._data.itemsize
    arr = xp.lib.stride_tricks.as_strided(
        store._data, shape=size, strides=tuple(s * item for s in stride)
    )
    return _done(Tensor._wrap(arr), requires_grad)


def empty_permuted(
    size,
    physical_layout,
    *,
    dtype=None,
    layout=None,
    device=None,
    requires_grad=False,
    pin_memory=False,
) -> Tensor:
    """An uninitialised tensor of ``size`` laid out in memory in ``physical_layout`` order."""
    size, order = tuple(int(s) for s in size), [int(p) for p in physical_layout]
    if sorted(order) != list(builtins.range(len(size))):
        raise RuntimeError(
            f"Number of dimensions in size does not match the length of the "
            f"physical_layout; i.e. len(size) = {len(size)} is not equal to "
            f"len(physical_layout) = {len(order)}"
        )
    phys = empty(tuple(size[p] for p in order), dtype=dtype, device=device)
    inv = [order.index(i) for i in builtins.range(len(order))]
    out = Tensor._wrap(phys._data.transpose(inv))
    return _done(out, requires_grad)


def scalar_tensor(
    s, *, dtype=None, layout=None, device=None, requires_grad=False, pin_memory=None
) -> Tensor:
    """A 0-d tensor holding ``s``, of the default floating dtype unless ``dtype`` is given.
    ``layout`` and ``pin_memory`` are accepted for PyTorch's signature.
    """
    if isinstance(s, Tensor):
        s = s.item()
    return full(
        (), s, dtype=dtype or get_default_dtype(), device=device, requires_grad=requires_grad
    )


def range(
    start=0, end=None, step=1, *, dtype=None, layout=None, device=None, requires_grad=False
) -> Tensor:  # noqa: A001 - torch.range
    """Deprecated inclusive range: ``start, start + step, ...`` up to and including ``end``."""
    warnings.warn(
        "torch.range is deprecated and will be removed in a future release because "
        "its behavior is inconsistent with Python's range builtin. Instead, use "
        "torch.arange, which produces values in [start, end).",
        UserWarning,
        stacklevel=2,
    )
    if end is None:
        start, end = 0, start
    start, end, step = (v.item() if isinstance(v, Tensor) else v for v in (start, end, step))
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError("upper bound and larger bound inconsistent with step sign")
    n = int(math.floor((end - start) / step)) + 1
    d = to_dtype(dtype) if dtype is not None else get_default_dtype()
    xp = get_array_module(device or CPU)
    arr = (xp.arange(n, dtype=np.float64) * step + start).astype(d.np)
    return _done(Tensor._wrap(arr), requires_grad)


def asarray(obj, *, dtype=None, device=None, copy=None, requires_grad=False) -> Tensor:
    """A tensor from ``obj`` sharing its memory when possible (``copy=False`` insists on it,
    ``copy=True`` always copies)."""
    if isinstance(obj, Tensor):
        out = obj
        if dtype is not None or device is not None:
            out = obj.to(device=device, dtype=dtype)
        if copy is False and out is not obj:
            raise ValueError("asarray(): cannot satisfy copy=False: a conversion is needed")
        if copy:
            out = out.clone() if out is obj else out
        return _done(out.detach() if out is obj and requires_grad else out, requires_grad)
    if type(obj).__name__ == "UntypedStorage" and hasattr(obj, "_array"):
        obj = obj._array()  # ember.UntypedStorage: its bytes, shared (torch.asarray(storage))
    arr = _to_array(obj, dtype, device)
    shares = (
        isinstance(obj, np.ndarray)
        and isinstance(arr, np.ndarray)
        and np.shares_memory(arr, obj)
        or (_cupy.cupy is not None and arr is obj)
    )
    if copy is False and not shares and isinstance(obj, np.ndarray):
        raise ValueError("asarray(): cannot satisfy copy=False: a conversion is needed")
    if copy and shares:
        arr = arr.copy()
    return _done(Tensor._wrap(arr), requires_grad)


def frombuffer(
    buffer, *, dtype, count: int = -1, offset: int = 0, requires_grad: bool = False
) -> Tensor:
    """A 1-D CPU tensor over ``buffer``'s bytes (shared: writes show through)."""
    npd = to_dtype(dtype).np
    nbytes = len(memoryview(buffer).cast("B"))
    if nbytes == 0 or (count == -1 and (nbytes - offset) == 0):
        raise ValueError(f"both buffer length ({nbytes}) and count ({count}) must not be 0")
    if offset < 0 or offset >= nbytes:
        raise ValueError(
            f"offset ({offset} bytes) must be non-negative and no greater than "
            f"buffer length ({nbytes} bytes) minus 1"
        )
    if count == -1 and (nbytes - offset) % npd.itemsize:
        raise ValueError(
            f"buffer length ({nbytes - offset} bytes) after offset ({offset} bytes) "
            f"must be a multiple of element size ({npd.itemsize})"
        )
    arr = np.frombuffer(buffer, dtype=npd, count=count, offset=offset)
    return _done(Tensor._wrap(arr), requires_grad)


def _tri_indices(row, col, offset, dtype, device, upper):
    xp = get_array_module(device or CPU)
    r, c = np.triu_indices(row, offset, col) if upper else np.tril_indices(row, offset, col)
    npd = (to_dtype(dtype) if dtype is not None else int64).np
    return Tensor._wrap(xp.asarray(np.stack([r, c]).astype(npd).reshape(2, -1)))


def tril_indices(
    row: int, col: int, offset: int = 0, *, dtype=None, device=None, layout=None
) -> Tensor:
    """The (2, N) coordinates of the lower triangle of a ``row`` x ``col`` matrix."""
    return _tri_indices(row, col, offset, dtype, device, False)


def triu_indices(
    row: int, col: int, offset: int = 0, *, dtype=None, device=None, layout=None
) -> Tensor:
    """The (2, N) coordinates of the upper triangle of a ``row`` x ``col`` matrix."""
    return _tri_indices(row, col, offset, dtype, device, True)


# ---- resize and CPU callables -------------------------------------------------------------
def resize_(self: Tensor, *sizes, memory_format=None) -> Tensor:
    """Reshape in place to ``sizes``: the first elements (in memory order) are kept, new ones
    are zero (PyTorch leaves them uninitialised)."""
    if self.requires_grad and grad_mode._state.enabled:
        raise RuntimeError("cannot resize variables that require grad")
    size = _sizes(sizes)
    n = int(np.prod(size, dtype=np.int64))
    d = self._data
    if n == d.size and d.flags.c_contiguous:
        self._data = d.reshape(size)
    else:
        xp = get_array_module(d)
        flat = xp.zeros(n, dtype=d.dtype)
        m = builtins.min(n, d.size)
        flat[:m] = d.reshape(-1)[:m]
        self._data = flat.reshape(size)
    self._version_counter[0] += 1
    return self


def resize_as_(self: Tensor, the_template: Tensor, *, memory_format=None) -> Tensor:
    """Resize ``self`` in place to the shape of ``the_template`` (see :meth:`Tensor.resize_`: grown
    memory is zero-filled in ember) and return it.
    """
    return resize_(self, the_template._data.shape)


def resize(self: Tensor, *sizes) -> Tensor:
    """Deprecated out-of-place resize: a reshape to the same number of elements."""
    warnings.warn("non-inplace resize is deprecated", UserWarning, stacklevel=2)
    return self.reshape(_sizes(sizes))


def resize_as(self: Tensor, tensor: Tensor) -> Tensor:
    warnings.warn("non-inplace resize_as is deprecated", UserWarning, stacklevel=2)
    return self.reshape(tensor._data.shape)


def _cpu_only(self, name):
    if type(self._data) is not np.ndarray:
        raise TypeError(f"{name} is only implemented on CPU tensors")


def apply_(self: Tensor, callable) -> Tensor:
    """Apply a Python function to every element, in place (CPU only; slow, as in PyTorch)."""
    _cpu_only(self, "apply_")
    check_inplace(self)
    d = self._data
    if d.size:
        d[...] = np.vectorize(callable, otypes=[d.dtype])(d)
    self._version_counter[0] += 1
    return self


def map_(self: Tensor, tensor: Tensor, callable) -> Tensor:
    """``self[i] = callable(self[i], tensor[i])`` for every element (``tensor`` broadcast)."""
    _cpu_only(self, "map_")
    check_inplace(self)
    d = self._data
    other = np.broadcast_to(tensor._data, d.shape)
    if d.size:
        d[...] = np.vectorize(callable, otypes=[d.dtype])(d, other)
    self._version_counter[0] += 1
    return self


# the random in-place fills and count draws live in creation_random_ext.py
from .creation_random_ext import (  # noqa: E402, F401 (re-exported: ember.creation_ext.poisson, ...)
    _check_float_pair,
    _fill,
    _sample_dirichlet,
    _standard_gamma,
    _uniform01,
    binomial,
    cauchy_,
    exponential_,
    geometric_,
    log_normal_,
    poisson,
)
