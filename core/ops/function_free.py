"""Builders for ops without gradients: they skip the Function machinery entirely."""

from __future__ import annotations

import time

import numpy as np

from ..autograd.function import _device_mismatch
from ..tensor import Tensor
from ._docs import nograd_doc

# ember.profiler sets this to its recording callback while it records (one check per op).
_profile_hook = [None]


def _xp_of(d):
    if type(d) is np.ndarray:
        return np
    from ..backend.device import get_array_module
    from ..backend.meta import MetaArray, xp

    return xp if type(d) is MetaArray else get_array_module(d)


def binary_nograd(ufunc_name: str):
    """A comparison/logical/bitwise op over two tensors or a tensor and a scalar."""

    def op(input, other):
        hook = _profile_hook[0]
        if hook is not None:
            t0 = time.perf_counter_ns()
        a = input._data if isinstance(input, Tensor) else input
        b = other._data if isinstance(other, Tensor) else other
        if isinstance(input, Tensor) and isinstance(other, Tensor) and type(a) is not type(b):
            ref = _device_mismatch(a, b)
        else:
            ref = a if isinstance(input, Tensor) else b
        xp = _xp_of(ref)
        try:
            out = getattr(xp, ufunc_name)(a, b)
        except ValueError as err:
            from ._util import raise_broadcast_error

            raise_broadcast_error(err, input, other)
        except NotImplementedError as err:
            if type(err).__name__ != "_NoData":
                raise
            # a __torch_dispatch__ wrapper subclass (core/_dispatch.py): to its handler
            from .._dispatch import nograd_dispatch

            return nograd_dispatch(op, ufunc_name, (input, other))
        # ufuncs on 0-d arrays return scalars; a tensor always holds an array
        result = Tensor._wrap(xp.asarray(out))
        if hook is not None:
            hook(ufunc_name, t0, (input, other), result)
        return result

    op.__name__ = ufunc_name
    op.__doc__ = nograd_doc(ufunc_name, binary=True)
    return op


def unary_nograd(ufunc_name: str):
    def op(input):
        hook = _profile_hook[0]
        if hook is not None:
            t0 = time.perf_counter_ns()
        xp = _xp_of(input._data)
        try:
            result = Tensor._wrap(xp.asarray(getattr(xp, ufunc_name)(input._data)))
        except NotImplementedError as err:
            if type(err).__name__ != "_NoData":
                raise
            from .._dispatch import nograd_dispatch  # a wrapper subclass (core/_dispatch.py)

            return nograd_dispatch(op, ufunc_name, (input,))
        if hook is not None:
            hook(ufunc_name, t0, (input,), result)
        return result

    op.__name__ = ufunc_name
    op.__doc__ = nograd_doc(ufunc_name, binary=False)
    return op
