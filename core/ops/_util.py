"""Helpers shared by the op families: dim normalisation and PyTorch's type promotion."""

from __future__ import annotations

import numpy as np

from ..backend.dtype import (
    _FLOAT,
    from_numpy_dtype,
    get_default_dtype,
    result_type_of,
    scalar_dtype,
)
from ..tensor import Tensor
from .convert import to_dtype_op


def wrap_dim(dim: int, ndim: int) -> int:
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(
            f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})"
        )
    return dim + n if dim < 0 else dim


def norm_dims(dim, ndim: int):
    """None -> None; int or sequence -> a sorted tuple of non-negative axes."""
    if dim is None:
        return None
    if isinstance(dim, (int, np.integer)):
        return (wrap_dim(int(dim), ndim),)
    dims = tuple(sorted(wrap_dim(int(d), ndim) for d in dim))
    if len(set(dims)) != len(dims):
        raise RuntimeError(f"dim {dims} appears multiple times in the list of dims")
    return dims


def result_dtype(*operands):
    """PyTorch's result_type for tensors and Python scalars (returns an ember dtype)."""
    dims, zeros, scalars = [], [], []
    for o in operands:
        if isinstance(o, Tensor):
            d = from_numpy_dtype(o._data.dtype)
            (dims if o._data.ndim else zeros).append(d)
        elif o is not None:
            scalars.append(scalar_dtype(o))
    return result_type_of(dims, zeros, scalars)


def promote(a, b):
    """Cast tensor operands of a binary op to their common dtype; Python scalars stay weak.

    Fast path: two tensors of one dtype, or a tensor and a scalar of no higher category.
    """
    ta, tb = isinstance(a, Tensor), isinstance(b, Tensor)
    if ta and tb:
        if a._data.dtype == b._data.dtype:
            return a, b
    elif ta and _scalar_fits(b, a._data.dtype):
        return a, b
    elif tb and _scalar_fits(a, b._data.dtype):
        return a, b
    rt = result_dtype(a, b)
    npd = rt.np
    if ta and a._data.dtype != npd:
        a = to_dtype_op(a, rt)
    if tb and b._data.dtype != npd:
        b = to_dtype_op(b, rt)
    if not ta and not tb:
        raise TypeError("expected at least one tensor operand")
    return a, b


def _scalar_fits(s, np_dtype) -> bool:
    """A Python scalar whose category does not exceed the tensor's keeps the tensor's dtype."""
    kind = np_dtype.kind
    if isinstance(s, bool):
        return True
    if isinstance(s, int):
        return kind != "b"
    if isinstance(s, float):
        return kind in "fcV"
    if isinstance(s, complex):
        return kind == "c"
    return False


def float_dtype_for(t: Tensor):
    """Integer/bool tensors become the default float for ops like exp, mean, true division."""
    if t._data.dtype.kind in "fcV":
        return None
    return get_default_dtype()


def is_float_category(d) -> bool:
    return d.category >= _FLOAT
