"""The range factories (``arange``, ``linspace``, ``logspace``, ``eye``), re-exported by
:mod:`ember.creation`, where they keep their ``__module__``."""

from __future__ import annotations

import builtins
import math

import numpy as np

from . import _factory_kwargs
from .backend.device import default_device, get_array_module
from .backend.dtype import get_default_dtype, int64, to_dtype
from .tensor import Tensor


def arange(
    start=None,
    end=None,
    step=1,
    *,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    """The values from ``start`` up to (not including) ``end`` in steps of ``step``, a 1-D tensor.

    ``arange(n)`` counts from 0. Without ``dtype`` the result is ``int64`` when all three bounds
    are integers, else the default floating dtype. Floating results are ``start + i * step``
    (no accumulated error).

    Args:
        start: the first value (or ``end`` when it is the only argument).
        end: the bound, excluded.
        step: the increment; non-zero.
        dtype: the dtype (default: :func:`ember.get_default_dtype`).
        device: where the tensor is created (default: the default device).
        requires_grad: whether autograd records operations on the result.
        layout, pin_memory: PyTorch's keywords (core/_factory_kwargs.py).
    """
    if end is None:
        if start is None:
            raise TypeError('arange() missing 1 required positional arguments: "end"')
        start, end = 0, start
    elif start is None:  # arange(end=n), as ultralytics' task-aligned assigner calls it
        start = 0
    vals = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if dtype is None:
        dtype = int64 if builtins.all(isinstance(v, int) for v in vals) else get_default_dtype()
    xp = get_array_module(device or default_device())
    npd = to_dtype(dtype).np
    n = max(math.ceil((vals[1] - vals[0]) / vals[2]), 0)
    arr = (
        (xp.arange(n, dtype=np.float64) * vals[2] + vals[0]).astype(npd)
        if npd.kind == "f"
        else xp.arange(vals[0], vals[1], vals[2]).astype(npd)
    )
    t = Tensor._wrap(arr)
    if layout is not None or pin_memory:
        t = _factory_kwargs.apply(t, layout, pin_memory, "arange")
    return t.requires_grad_(True) if requires_grad else t


def linspace(
    start,
    end,
    steps,
    *,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    """``steps`` evenly spaced values from ``start`` to ``end``, both included.

    Args:
        start: the first value.
        end: the last value.
        steps: the number of values.
        dtype: the dtype (default: :func:`ember.get_default_dtype`).
        device: where the tensor is created (default: the default device).
        requires_grad: whether autograd records operations on the result.
        layout, pin_memory: PyTorch's keywords (core/_factory_kwargs.py).
    """
    xp = get_array_module(device or default_device())
    npd = (to_dtype(dtype) if dtype else get_default_dtype()).np
    t = Tensor._wrap(_linspace_array(xp, start, end, int(steps), npd))
    if layout is not None or pin_memory:
        t = _factory_kwargs.apply(t, layout, pin_memory, "linspace")
    return t.requires_grad_(True) if requires_grad else t


def _linspace_array(xp, start, end, steps: int, npd: np.dtype):
    """PyTorch's CPU linspace values, bit for bit in float32: ``step = (end - start) / (steps -
    1)`` in the output's precision, then ``start + step * i`` for the first half and ``end - step
    * (steps - 1 - i)`` for the rest, each one fused multiply-add (one rounding; emulated in a
    wider type). The values match torch's exactly, so grids built from them sample the same
    pixels at ``nearest`` ties (kornia's warps build their grids with linspace)."""
    start, end = (v.item() if isinstance(v, Tensor) else v for v in (start, end))
    # ml_dtypes' bfloat16 has kind "V"
    if npd.kind not in "fiuV" or steps < 2:  # complex, 0 or 1 step: NumPy's values
        return xp.linspace(start, end, steps, dtype=np.float64).astype(npd)
    i = xp.arange(steps)
    first = i < steps // 2
    if npd.kind in "fV" and npd.itemsize == 2:  # float16/bfloat16: each operation rounds
        lo, hi = npd.type(start), npd.type(end)
        diff = np.float32(npd.type(np.float32(hi) - np.float32(lo)))
        step = npd.type(diff / np.float32(npd.type(steps - 1)))

        def mul_add(a, b, n, sign):  # a + sign * (step * n), rounded after each operation
            prod = (np.float32(b) * n.astype(npd).astype(np.float32)).astype(npd)
            return (np.float32(a) + sign * prod.astype(np.float32)).astype(npd)

        return xp.where(first, mul_add(lo, step, i, 1), mul_add(hi, step, steps - 1 - i, -1))
    # The step is in the output's precision (double for integers, whose bounds are truncated
    # first); each value is one multiply-add, rounded once: float64 holds float32's exact
    # product, long double emulates the integers' (truncation is sensitive to the last bit);
    # float64 itself computes in float64, within an ulp of torch's fma (long double is 5x slower)
    if npd.kind == "f":
        cd, wide = npd.type, np.float64
        lo, hi = cd(start), cd(end)
    else:
        cd, wide = np.float64, np.longdouble if xp is np else np.float64
        lo, hi = cd(int(start)), cd(int(end))
    step = wide((hi - lo) / cd(steps - 1))
    half = steps // 2
    vals = xp.empty(steps, dtype=wide)
    xp.multiply(xp.arange(half, dtype=wide), step, out=vals[:half])
    vals[:half] += wide(lo)
    xp.multiply(xp.arange(steps - half - 1, -1, -1, dtype=wide), -step, out=vals[half:])
    vals[half:] += wide(hi)
    return vals.astype(cd).astype(npd, copy=False)


def logspace(
    start,
    end,
    steps,
    base=10.0,
    *,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
):
    """``steps`` values from ``base ** start`` to ``base ** end``, evenly spaced on a log scale.

    Args:
        start: the first exponent.
        end: the last exponent.
        steps: the number of values.
        base: the base of the logarithm.
        dtype: the dtype (default: :func:`ember.get_default_dtype`).
        device: where the tensor is created (default: the default device).
        requires_grad: whether autograd records operations on the result.
        layout, pin_memory: PyTorch's keywords (core/_factory_kwargs.py).
    """
    xp = get_array_module(device or default_device())
    npd = (to_dtype(dtype) if dtype else get_default_dtype()).np
    t = Tensor._wrap(xp.logspace(start, end, int(steps), base=base).astype(npd))
    if layout is not None or pin_memory:
        t = _factory_kwargs.apply(t, layout, pin_memory, "logspace")
    return t.requires_grad_(True) if requires_grad else t


def eye(
    n,
    m=None,
    *,
    dtype=None,
    device=None,
    requires_grad=False,
    layout=None,
    pin_memory=False,
) -> Tensor:
    """A 2-D tensor with ones on the diagonal and zeros elsewhere.

    Args:
        n: the number of rows.
        m: the number of columns (default ``n``).
        dtype: the dtype (default: :func:`ember.get_default_dtype`).
        device: where the tensor is created (default: the default device).
        requires_grad: whether autograd records operations on the result.
        layout, pin_memory: PyTorch's keywords (core/_factory_kwargs.py).
    """
    xp = get_array_module(device or default_device())
    npd = (to_dtype(dtype) if dtype else get_default_dtype()).np
    t = Tensor._wrap(xp.eye(n, m, dtype=npd))
    if layout is not None or pin_memory:
        t = _factory_kwargs.apply(t, layout, pin_memory, "eye")
    return t.requires_grad_(True) if requires_grad else t


for _fn in (arange, linspace, logspace, eye):
    _fn.__module__ = "ember.creation"
del _fn
