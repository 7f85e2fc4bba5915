"""Builders for ops without gradients: they skip the Function machinery entirely."""

from __future__ import annotations

import numpy as np

from ..autograd.function import _device_mismatch
from ..tensor import Tensor


def _xp_of(d):
    if type(d) is np.ndarray:
        return np
    from ..backend.device import get_array_module

    return get_array_module(d)


def binary_nograd(ufunc_name: str):
    """A comparison/logical/bitwise op over two tensors or a tensor and a scalar."""

    def op(input, other):
        a = input._data if isinstance(input, Tensor) else input
        b = other._data if isinstance(other, Tensor) else other
        if isinstance(input, Tensor) and isinstance(other, Tensor) and type(a) is not type(b):
            _device_mismatch(a, b)
        ref = a if isinstance(input, Tensor) else b
        xp = _xp_of(ref)
        try:
            out = getattr(xp, ufunc_name)(a, b)
        except ValueError as err:
            from ._util import raise_broadcast_error

            raise_broadcast_error(err, input, other)
        # ufuncs on 0-d arrays return scalars; a tensor always holds an array
        return Tensor._wrap(xp.asarray(out))

    op.__name__ = ufunc_name
    return op


def unary_nograd(ufunc_name: str):
    def op(input):
        xp = _xp_of(input._data)
        return Tensor._wrap(xp.asarray(getattr(xp, ufunc_name)(input._data)))

    op.__name__ = ufunc_name
    return op
