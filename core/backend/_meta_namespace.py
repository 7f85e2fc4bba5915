"""The array namespace of the meta device: :data:`xp` (``get_array_module("meta")``).

NumPy, except that the factories (``empty``, ``zeros``, ``full``, ``arange``, ``asarray``, ...)
make zero-stride :class:`~ember.backend.meta.MetaArray` s and the random generator draws
shapes, not numbers. Everything else is NumPy's, its results turned into meta arrays.
``core/backend/meta.py`` re-exports every name here.
"""

from __future__ import annotations

import math

import numpy as np

from .meta import MetaArray, _full_like, _like, _plain, empty, to_meta


def _dt(dtype, default=np.float64):
    return np.dtype(default if dtype is None else dtype)


class _MetaGenerator:
    """What ``gen_for(generator, xp)`` gives for meta: draws shapes, not numbers, and leaves
    the real generator's state alone (torch's meta factories consume no randomness)."""

    def random(self, size=None, dtype=np.float64, out=None):
        return empty(() if size is None else size, dtype)

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        return empty(() if size is None else size, dtype)

    def uniform(self, low=0.0, high=1.0, size=None):
        return empty(() if size is None else size, np.float64)

    def normal(self, loc=0.0, scale=1.0, size=None):
        return empty(() if size is None else size, np.float64)

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        return empty(() if size is None else size, dtype)

    def permutation(self, x):
        n = x if isinstance(x, (int, np.integer)) else len(x)
        return empty((n,), np.int64)

    def __getattr__(self, name):
        raise NotImplementedError(f"random draw '{name}' is not supported on the meta device")


_GENERATOR = _MetaGenerator()


class _MetaNamespace:
    """numpy, with factories that make meta arrays (``get_array_module("meta")``)."""

    ndarray = MetaArray

    @staticmethod
    def empty(shape, dtype=None, order="C"):
        return empty(shape, _dt(dtype))

    zeros = ones = empty

    @staticmethod
    def full(shape, fill_value, dtype=None, order="C"):
        return empty(shape, np.asarray(fill_value).dtype if dtype is None else dtype)

    empty_like = zeros_like = ones_like = staticmethod(_like)
    full_like = staticmethod(_full_like)

    @staticmethod
    def arange(start, stop=None, step=1, dtype=None):
        if stop is None:
            start, stop = 0, start
        n = max(0, math.ceil((stop - start) / step))
        return empty((n,), np.arange(start, start + step, step, dtype=dtype).dtype)

    @staticmethod
    def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
        return empty((num,), _dt(dtype))

    @staticmethod
    def eye(N, M=None, k=0, dtype=float, order="C"):
        return empty((N, N if M is None else M), _dt(dtype))

    @staticmethod
    def asarray(a, dtype=None, order=None, **_):
        if type(a) is MetaArray:
            return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
        return to_meta(np.asarray(_plain(a), dtype=dtype))

    array = asarray

    @staticmethod
    def ascontiguousarray(a, dtype=None, **_):
        # never a real copy: the zero-stride view behind a meta array can stand for a
        # (2**10, 3, 2**16, 2**16) input, whose contiguous copy (im2col) would be terabytes
        return empty(np.shape(a), np.asarray(a).dtype if dtype is None else dtype)

    asfortranarray = ascontiguousarray

    def xp_generator(self):
        return _GENERATOR

    def __getattr__(self, name):
        # everything else is NumPy's: calls on meta arrays are intercepted by MetaArray, and
        # factories not listed above run once and keep only the result's shape and dtype
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, type):

            def meta_fn(*args, **kwargs):
                return to_meta(attr(*args, **kwargs))

            meta_fn.__name__ = name
            return meta_fn
        return attr


#: ``get_array_module(device("meta"))``
xp = _MetaNamespace()
