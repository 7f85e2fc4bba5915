"""Tensor creation: tensor/as_tensor/from_numpy, filled and random tensors, ranges."""

from __future__ import annotations

import builtins

import numpy as np

from . import _factory_kwargs
from .backend import _cupy, meta
from .backend.device import as_device, default_device, get_array_module
from .backend.dtype import from_numpy_dtype, get_default_dtype, int64, to_dtype
from .tensor import Tensor


def _np_dtype(dtype):
    return None if dtype is None else to_dtype(dtype).np


def _unwrap_nested(obj):
    if isinstance(obj, Tensor):
        return obj._data if type(obj._data) is np.ndarray else obj._data.get()
    if isinstance(obj, (list, tuple)):
        return [_unwrap_nested(o) for o in obj]
    return obj


def _to_array(data, dtype, device):
    """Convert Python data / arrays / tensors to an array on ``device`` with ``dtype``."""
    dev = as_device(device) if device is not None else None
    if dev is None and not isinstance(data, Tensor) and default_device().type != "cpu":
        dev = default_device()  # ember.set_default_device
    npd = _np_dtype(dtype)
    if isinstance(data, Tensor):
        arr = data._data
    elif isinstance(data, np.ndarray) or (
        _cupy.cupy is not None and isinstance(data, _cupy.cupy.ndarray)
    ):
        # a subclass (np.memmap, np.matrix) as a plain view of the same memory
        arr = (
            data.view(np.ndarray)
            if isinstance(data, np.ndarray) and type(data) is not np.ndarray
            else data
        )
    elif isinstance(data, np.generic):  # NumPy scalars keep their dtype, as in PyTorch
        arr = np.asarray(data)
    else:
        py = _unwrap_nested(data)
        arr = np.asarray(py)
        if arr.dtype.kind == "O":
            raise TypeError(
                f"could not convert {type(data).__name__} to a tensor (mixed or ragged data)"
            )
        if npd is None:
            if arr.dtype.kind == "f" and not _has_numpy_floats(py):
                arr = arr.astype(get_default_dtype().np)
            elif arr.dtype.kind == "c" and not _has_numpy_floats(py):
                arr = arr.astype(get_default_dtype().to_complex().np)
            elif arr.dtype.kind in "iu" and arr.dtype != np.uint8:
                arr = arr.astype(np.int64)
    if npd is not None and arr.dtype != npd:
        arr = arr.astype(npd)
    else:
        from_numpy_dtype(arr.dtype)  # raise for unsupported dtypes (e.g. uint32, str)
    if dev is not None and dev.type == "meta":
        arr = meta.to_meta(arr)
    elif dev is not None and dev.type == "cuda":
        cp = _cupy.require_cupy()
        with cp.cuda.Device(dev.index):
            arr = cp.asarray(arr)
    elif dev is not None and type(arr) is not np.ndarray:
        arr = arr.get()
    return arr


def _has_numpy_floats(py):
    if isinstance(py, np.ndarray):
        return True
    if isinstance(py, list):
        return builtins.any(_has_numpy_floats(p) for p in py[:1])
    return isinstance(py, np.generic)


def tensor(
    data, *, dtype=None, device=None, requires_grad: bool = False, pin_memory: bool = False
) -> Tensor:
    """Copy ``data`` into a new leaf tensor (floats default to ``get_default_dtype()``)."""
    arr = _to_array(data, dtype, device)
    if (
        isinstance(data, Tensor)
        or arr is data
        or (
            isinstance(data, np.ndarray)
            and isinstance(arr, np.ndarray)  # not a GPU copy
            and np.shares_memory(arr, data)
        )
    ):
        arr = arr.copy()
    t = Tensor._wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """Like ``tensor`` but shares memory with tensors/arrays when no conversion is needed."""
    if isinstance(data, Tensor):
        if (dtype is None or to_dtype(dtype).np == data._data.dtype) and (
            device is None or as_device(device) == data.device
        ):
            return data
        return data.to(device=device, dtype=dtype)
    return Tensor._wrap(_to_array(data, dtype, device))


def from_numpy(ndarray: np.ndarray) -> Tensor:
    """A CPU tensor sharing memory with ``ndarray``."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    from_numpy_dtype(ndarray.dtype)
    # subclasses (np.memmap, np.matrix) become plain views of the same memory: ops pick their
    # array module by the exact type
    return Tensor._wrap(ndarray if type(ndarray) is np.ndarray else ndarray.view(np.ndarray))


def _dim_int(s, what: str = "size"):
    """A size entry given as a tensor as an int: like torch (``__index__``), an integer tensor
    with one element (e.g. a 0-d ``seq_len`` tensor); other entries pass through unchanged."""
    if not isinstance(s, Tensor):
        return s
    if s._data.dtype.kind not in "iu" or s.numel() != 1:
        raise TypeError(
            f"expected a sequence of integers as {what}, got a tensor of dtype {s.dtype} and "
            f"shape {list(s.shape)} (a tensor in a {what} must be an integer tensor with one "
            "element)"
        )
    return int(s.item())


def _size(size, size_kw=None):
    if size_kw is not None:  # torch.empty(size=(2, 3))
        if size:
            raise TypeError("size given both positionally and as the keyword 'size'")
        size = (size_kw,)
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not all(type(s) is int for s in size):
        size = tuple(_dim_int(s) for s in size)
    for s in size:
        if not isinstance(s, (int, np.integer)) or isinstance(s, bool):
            raise TypeError(f"expected a sequence of integers as size, got {size!r}")
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(size)}")
    return tuple(int(s) for s in size)


def _make(fill, size, dtype, device, requires_grad, value=None):
    xp = get_array_module(device or default_device())
    npd = (to_dtype(dtype) if dtype is not None else get_default_dtype()).np
    if fill == "full":
        arr = xp.full(size, value, dtype=npd)
    else:
        arr = getattr(xp, fill)(size, dtype=npd)
    t = Tensor._wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def zeros(
    *sizes,
    size=None,
    dtype=None,
    device=None,
    requires_grad=False,
    out=None,
    layout=None,
    pin_memory=False,
) -> Tensor:
    """A tensor of the given shape filled with zeros.

    Args:
        size: the shape, as integers or one sequence (``zeros(2, 3)`` or ``zeros((2, 3))``).
        dtype: the dtype (default: :func:`ember.get_default_dtype`).
        device: where the tensor is created (default: the default device).
        requires_grad: whether autograd records operations on the result.
        out: the tensor to write the zeros into, which is returned (``ember.zeros`` handles
            it: core/_out_arg.py).
        layout, pin_memory: PyTorch's keywords (core/_factory_kwargs.py).
    """
    t = _make("zeros", _size(sizes, size), dtype, device, requires_grad)
    if layout is not None or pin_memory:
        return _factory_kwargs.apply(t, layout, pin_memory, "zeros")
    return t


def ones(
    *sizes, size=None, dtype=None, device=None, requires_grad=False, layout=None, pin_memory=False
) -> Tensor:
    """A tensor of the given shape filled with ones.

    Args:
        size: the shape, as integers or one sequence.
        dtype: the dtype (default: :func:`ember.get_default_dtype`).
        device: where the tensor is created (default: the default device).
        requires_grad: whether autograd records operations on the result.
        layout, pin_memory: PyTorch's keywords (core/_factory_kwargs.py).
    """
    t = _make("ones", _size(sizes, size), dtype, device, requires_grad)
    if layout is not None or pin_memory:
        return _factory_kwargs.apply(t, layout, pin_memory, "ones")
    return t


def empty(
    *sizes,
    size=None,
    dtype=None,
    device=None,
    requires_grad=False,
    memory_format=None,
    layout=None,
    pin_memory=False,
) -> Tensor:
    """A tensor of the given shape with uninitialized values.

    Args:
        size: the shape, as integers or one sequence.
        dtype: the dtype (default: :func:`ember.get_default_dtype`).
        device: where the tensor is created (default: the default device).
        requires_grad: whether autograd records operations on the result.
        memory_format: accepted for PyTorch's signature; the result is row-major.
        layout, pin_memory: PyTorch's keywords (core/_factory_kwargs.py).
    """
    t = _make("empty", _size(sizes, size), dtype, device, requires_grad)
    if layout is not None or pin_memory:
        return _factory_kwargs.apply(t, layout, pin_memory, "empty")
    return t


def full(
    size,
    fill_value,
    *,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    """A tensor of shape ``size`` filled with ``fill_value``.

    Args:
        size: the shape (a sequence, or an int for 1-D).
        fill_value: the value; without ``dtype``, a bool gives a ``bool`` tensor, an int an
            ``int64`` tensor and a float the default dtype.
        dtype: the dtype (default: :func:`ember.get_default_dtype`).
        device: where the tensor is created (default: the default device).
        requires_grad: whether autograd records operations on the result.
        layout, pin_memory: PyTorch's keywords (core/_factory_kwargs.py).
    """
    if dtype is None:
        if isinstance(fill_value, bool):
            dtype = "bool"
        elif isinstance(fill_value, int):
            dtype = int64
    t = _make(
        "full",
        _size((size,) if isinstance(size, int) else tuple(size)),
        dtype,
        device,
        requires_grad,
        fill_value,
    )
    if layout is not None or pin_memory:
        return _factory_kwargs.apply(t, layout, pin_memory, "full")
    return t


def _like(fn, input, dtype, device, requires_grad, *args, layout=None, pin_memory=False, fmt=None):
    out = fn(
        *args,
        input._data.shape,
        dtype=dtype or input.dtype,
        device=device or input.device,
        requires_grad=requires_grad,
        layout=layout,
        pin_memory=pin_memory,
    )
    if fmt is not None or input.ndim in (4, 5):  # channels_last kept, as torch's
        from .ops.convert import like_layout

        out = like_layout(out, input, fmt)
    return out


_LIKE_DOC = """{what} with the shape of ``input``.

    Args:
        input (Tensor): the tensor whose shape to take.
        dtype: the dtype (default: that of ``input``).
        device: the device (default: that of ``input``).
        requires_grad: whether autograd records operations on the result.
        memory_format: ``channels_last`` lays the result out NHWC; the default keeps
            ``input``'s NHWC layout (otherwise row-major).
        layout, pin_memory: PyTorch's keywords (core/_factory_kwargs.py).
    """


def _like_factory(fn, name: str, what: str):
    """``zeros_like`` / ``ones_like`` / ``empty_like``: one signature, over ``fn``."""

    def like(
        input,
        *,
        dtype=None,
        device=None,
        requires_grad=False,
        memory_format=None,
        layout=None,
        pin_memory=False,
    ):
        return _like(
            fn,
            input,
            dtype,
            device,
            requires_grad,
            layout=layout,
            pin_memory=pin_memory,
            fmt=memory_format,
        )

    like.__name__ = like.__qualname__ = name
    like.__doc__ = _LIKE_DOC.format(what=what)
    return like


zeros_like = _like_factory(zeros, "zeros_like", "A tensor of zeros")
ones_like = _like_factory(ones, "ones_like", "A tensor of ones")
empty_like = _like_factory(empty, "empty_like", "An uninitialized tensor")


def full_like(
    input,
    fill_value,
    *,
    dtype=None,
    device=None,
    requires_grad=False,
    memory_format=None,
    layout=None,
    pin_memory=False,
):
    """A tensor filled with ``fill_value`` with the shape of ``input``.

    Args:
        input (Tensor): the tensor whose shape to take.
        fill_value: the value.
        dtype: the dtype (default: that of ``input``).
        device: the device (default: that of ``input``).
        requires_grad: whether autograd records operations on the result.
        memory_format: ``channels_last`` lays the result out NHWC; the default keeps
            ``input``'s NHWC layout (otherwise row-major).
        layout, pin_memory: PyTorch's keywords (core/_factory_kwargs.py).
    """
    out = full(
        input._data.shape,
        fill_value,
        dtype=dtype or input.dtype,
        device=device or input.device,
        requires_grad=requires_grad,
        layout=layout,
        pin_memory=pin_memory,
    )
    if memory_format is not None or input.ndim in (4, 5):  # channels_last kept, as torch's
        from .ops.convert import like_layout

        out = like_layout(out, input, memory_format)
    return out


def is_floating_point(input) -> bool:
    """Whether the dtype of ``input`` is a floating dtype."""
    return input.is_floating_point()


def numel(input) -> int:
    """The number of elements of ``input``."""
    return input.numel()


# the random factories live in creation_random.py (it uses this module's helpers, so it is
# imported last); the range factories in creation_ranges.py
from .creation_random import (  # noqa: E402, F401 (re-exported: ember.creation.rand, ...)
    bernoulli,
    multinomial,
    normal,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
)
from .creation_ranges import arange, eye, linspace, logspace  # noqa: E402, F401 (re-exported)
