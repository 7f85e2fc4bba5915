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
    start,
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
        start, end = 0, start
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
    t = Tensor._wrap(xp.linspace(start, end, int(steps), dtype=np.float64).astype(npd))
    if layout is not None or pin_memory:
        t = _factory_kwargs.apply(t, layout, pin_memory, "linspace")
    return t.requires_grad_(True) if requires_grad else t


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
