"""Helpers of ``core/_mt_stream.py``'s small draws: up to ``_FAST`` values are computed in
Python ints and floats from the engine's 32-bit outputs rather than by a dozen NumPy calls,
whose fixed cost (~1 us each) dwarfs the arithmetic on a handful of values. The numbers are
the same: IEEE double arithmetic in the same order, one rounding to the dtype at the end
(``tests/test_random_overhead.py``)."""

from __future__ import annotations

import math
import struct

import numpy as np

# Up to this many values a draw is computed in Python ints and floats from the engine's
# outputs: the same numbers (IEEE double arithmetic, one rounding to the dtype at the end) for
# a fraction of a dozen NumPy calls' fixed cost.
_FAST = 32  # (values per draw)
_M24, _M53 = (1 << 24) - 1, (1 << 53) - 1
_S24, _S53 = 2.0**-24, 2.0**-53
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_TWO_PI = 2.0 * math.pi
_DTYPES = {t: np.dtype(t) for t in (np.float32, np.float64, _F32, _F64)}  # (np.dtype() ~1 us)


def _shape(size) -> tuple:
    """A draw's shape from NumPy's ``size`` (None: a scalar)."""
    if size is None:
        return ()
    if type(size) is tuple:
        return size
    return tuple(np.atleast_1d(size)) if np.ndim(size) else (size,)


_PACK_F32 = struct.Struct("<f")


def _fast_bound(x) -> bool:
    """A bound the Python-float paths take as is (a float, or an int that is one exactly)."""
    return type(x) is float or (type(x) is int and -(1 << 53) <= x <= 1 << 53)


def _f32_bounds(low, high) -> tuple[float, float]:
    """``float(f32(high) - f32(low))`` and ``float(f32(low))`` without NumPy scalars: a C cast
    to float32 through ``struct`` (the difference of two float32 values rounded in double, then
    to float32, is the float32 difference: 53 >= 2 * 24 + 2 bits); NumPy's when out of range."""
    f32 = _PACK_F32
    try:
        lo = f32.unpack(f32.pack(low))[0]
        return f32.unpack(f32.pack(f32.unpack(f32.pack(high))[0] - lo))[0], lo
    except OverflowError:
        return float(np.float32(high) - np.float32(low)), float(np.float32(low))


def _floats(vals: list, dt: np.dtype, shape: tuple) -> np.ndarray:
    """Python floats as an array of ``dt``, rounded once (as a float64 array's ``astype``)."""
    out = np.array(vals, dtype=dt) if dt is _F32 or dt is _F64 else np.array(vals).astype(dt)
    return out if len(shape) == 1 else out.reshape(shape)
