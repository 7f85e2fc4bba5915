"""The array attributes derived from a shape and a dtype, for the ``_data`` stand-ins that hold
no elements (a sparse tensor's, a wrapper subclass's)."""

from __future__ import annotations

import math


class ShapeOnly:
    """``ndim``, ``size`` and ``itemsize`` from ``self.shape`` and ``self.dtype``."""

    __slots__ = ()

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize
