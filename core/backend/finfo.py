"""``ember.finfo`` / ``ember.iinfo``: the numerical limits of a dtype, with PyTorch's fields."""

from __future__ import annotations

import numpy as np

from .dtype import dtype as _dtype
from .dtype import get_default_dtype, to_dtype


class finfo:
    """Machine limits of a floating-point dtype: ``bits``, ``eps``, ``max``, ``min``, ``tiny``,
    ``smallest_normal``, ``resolution`` and ``dtype`` (the dtype's name, as in PyTorch).

    ``ember.finfo()`` describes the default dtype. Complex dtypes give their real part's limits.
    """

    __slots__ = ("bits", "eps", "max", "min", "tiny", "smallest_normal", "resolution", "dtype")

    def __init__(self, type: _dtype | None = None):
        d = get_default_dtype() if type is None else to_dtype(type)
        if d.category not in (2, 3):  # float, complex
            raise TypeError(
                "ember.finfo() requires a floating point input type. Use "
                "ember.iinfo to handle 'ember.finfo'"
            )
        npd = d.np if d.category == 2 else np.empty(0, d.np).real.dtype
        info = np_finfo(npd)
        self.bits = int(np.dtype(npd).itemsize * 8)
        self.eps = float(info.eps)
        self.max = float(info.max)
        self.min = float(info.min)
        self.tiny = float(info.smallest_normal)
        self.smallest_normal = self.tiny
        self.resolution = 10.0 ** -int(info.precision)  # PyTorch's definition
        self.dtype = d.name if d.category == 2 else str(np.dtype(npd))

    def __eq__(self, other) -> bool:
        return isinstance(other, finfo) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )

    def __hash__(self) -> int:
        return hash((self.dtype, self.bits))

    def __repr__(self) -> str:
        return (
            f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, "
            f"eps={self.eps:g}, smallest_normal={self.smallest_normal:g}, "
            f"tiny={self.tiny:g}, dtype={self.dtype})"
        )


class iinfo:
    """Machine limits of an integer dtype: ``bits``, ``max``, ``min``, ``dtype``."""

    __slots__ = ("bits", "max", "min", "dtype")

    def __init__(self, type: _dtype):
        d = to_dtype(type)
        if d.category in (2, 3):
            raise TypeError(
                "ember.iinfo() requires an integer input type. Use ember.finfo to "
                "handle 'ember.iinfo'"
            )
        if d.category == 0:
            raise TypeError(f"{d} is not supported by ember.iinfo")
        info = np.iinfo(d.np)
        self.bits, self.min, self.max = int(info.bits), int(info.min), int(info.max)
        self.dtype = d.name

    def __eq__(self, other) -> bool:
        return isinstance(other, iinfo) and all(
            getattr(self, k) == getattr(other, k) for k in self.__slots__
        )

    def __hash__(self) -> int:
        return hash((self.dtype, self.bits))

    def __repr__(self) -> str:
        return f"iinfo(min={self.min:g}, max={self.max:g}, dtype={self.dtype})"


def np_finfo(npd) -> np.finfo:
    """``np.finfo`` for any array dtype, ml_dtypes' bfloat16 and float8 types included.

    ``np.finfo`` knows those only from ml_dtypes 0.7 on, whose import costs over a second
    (pyproject.toml pins below it), so every finfo of a runtime dtype goes through here.
    """
    npd = np.dtype(npd)
    if npd.kind == "V" or str(npd) == "bfloat16":  # ml_dtypes' bfloat16 / float8
        import ml_dtypes

        return ml_dtypes.finfo(npd)
    return np.finfo(npd)
