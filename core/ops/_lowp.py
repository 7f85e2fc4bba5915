"""float16/bfloat16 ops that compute in float32, as PyTorch's CPU kernels do.

NumPy has no float16 BLAS (a float16 matmul runs ~10x slower than float32), ml_dtypes' bfloat16
matmul returns float32, and ``einsum`` rejects bfloat16 outright. PyTorch accumulates
half-precision products and normalization statistics in float32 and rounds the result once. The
``float32_compute`` decorator gives a Function exactly that: its low-precision array inputs are
upcast to float32, forward and backward run in float32, and every output and gradient is rounded
back to the dtype of the input it belongs to.
"""

from __future__ import annotations

import numpy as np

from ..backend.dtype import bfloat16

LOW_PRECISION = frozenset(
    d for d in (np.dtype(np.float16), bfloat16.np if bfloat16 is not None else None) if d
)


# argument types with no dtype: skipped without a failed attribute lookup (every float32_compute
# op passes some: layer norm's eps and dims, cross-entropy's reduction and ignore_index)
_NO_DTYPE = frozenset((int, float, bool, str, tuple, type(None)))
_ndarray = np.ndarray


def _low_dtype(args):
    for a in args:
        if type(a) is _ndarray:
            dt = a.dtype
        elif type(a) in _NO_DTYPE:
            continue
        else:
            dt = getattr(a, "dtype", None)
        if dt in LOW_PRECISION:
            return dt
    return None


def _up(a):
    return a.astype(np.float32) if getattr(a, "dtype", None) in LOW_PRECISION else a


def _down(a, dt):
    return a.astype(dt) if getattr(a, "dtype", None) == np.float32 else a


def float32_compute(cls):
    """Class decorator: run ``cls`` in float32 when an input is float16/bfloat16."""
    forward, backward = cls.forward, cls.backward

    def fwd(ctx, *args, **kwargs):
        low = _low_dtype(args)
        if low is None:
            return forward(ctx, *args, **kwargs)
        ctx._lowp_in = tuple(getattr(a, "dtype", None) for a in args)
        ctx.supports_double_backward = False  # the float32 copies are not graph inputs
        out = forward(ctx, *(_up(a) for a in args), **kwargs)
        if type(out) is tuple:
            return tuple(_down(o, low) for o in out)
        return _down(out, low)

    def bwd(ctx, *grads):
        dtypes = getattr(ctx, "_lowp_in", None)
        if dtypes is None:
            return backward(ctx, *grads)
        res = backward(ctx, *(_up(g) for g in grads))
        single = not isinstance(res, tuple)
        res = (res,) if single else res
        res = tuple(
            _down(g, dt) if dt in LOW_PRECISION else g
            for g, dt in zip(res, dtypes + (None,) * (len(res) - len(dtypes)))
        )
        return res[0] if single else res

    cls.forward = staticmethod(fwd)
    cls.backward = staticmethod(bwd)
    return cls


class OpmathScalar(np.ndarray):
    """A Python float held in float32 beside a float16/bfloat16 NumPy array.

    torch's CPU ``mul`` and ``div`` by a Python scalar keep the scalar in float32 ("opmath")
    and round the product once: ``bf16(f32(x) * f32(0.37))``. NumPy would round the scalar to
    the array's dtype first (NEP 50), which changes about a third of the results by one ulp.
    A ufunc with this operand runs in float32 and rounds back to the other operand's dtype.
    (torch's ``add``, ``sub``, ``pow`` and comparisons do round the scalar: they don't use it.)
    """

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs:
            return NotImplemented
        low = None
        args = []
        for x in inputs:
            if isinstance(x, OpmathScalar):
                args.append(np.float32(x.view(np.ndarray)[()]))
            else:
                dt = getattr(x, "dtype", None)
                if dt in LOW_PRECISION:
                    low, x = dt, x.astype(np.float32)
                args.append(x)
        out = ufunc(*args)
        return out.astype(low) if low is not None else out


def opmath_scalar(value: float) -> OpmathScalar:
    """``value`` as an :class:`OpmathScalar` (a 0-d float32 array)."""
    return np.asarray(value, dtype=np.float32).view(OpmathScalar)


def is_low_cpu(t) -> bool:
    """Whether tensor ``t`` holds a float16/bfloat16 NumPy array."""
    d = t._data
    return type(d) is np.ndarray and d.dtype in LOW_PRECISION
