"""The channels-last direct convolution's layout (``conv_direct_cl``; split from it in
session 26): x (N, C, *S) zero-padded into channels-last rows by ``_numba_conv_layout``'s
tiles (``to_channels_last``; NumPy's transposing copies where ``LAYOUT`` is off), the table of
frame places those tiles write to, the buffer zeroed only where they do not write, and
``ClCols``, the padded input kept for the weight gradient.

The switches (``LAYOUT``, ``PAR_LAYOUT``) and the shared helpers stay in ``conv_direct_cl``
and are read from it at call time; every name here is importable from ``conv_direct_cl`` too.
"""

from __future__ import annotations

import functools
import math

import numpy as np

_kl = None  # the layout kernels' module, loaded on first use


@functools.lru_cache(maxsize=256)
def _frame_table(size, ps, pad, crow):
    """(L,) int64: each input position's place in the padded frame ``ps``, in C order, times
    ``crow`` (the values a channels-last row; ``_numba_conv_layout.to_cl``); shared by the
    cache's callers, which only read it."""
    pst = [math.prod(ps[i + 1 :]) for i in range(len(ps))]
    q = np.zeros(size, dtype=np.int64)
    for i, (m, (lo, _), st) in enumerate(zip(size, pad, pst)):
        q += ((np.arange(m, dtype=np.int64) + lo) * st).reshape((-1,) + (1,) * (len(size) - 1 - i))
    return q.ravel() * crow


def _layout_kernels():
    """``_numba_conv_layout`` where ``LAYOUT`` is on (and numba loads), else None."""
    global _kl
    if _kl is None:
        from . import _numba_conv_layout as _kl
    return _kl if _cl.LAYOUT and _cl.available() else None


def _copy(kl, name: str, macs: int, *args) -> None:
    """The layout copy ``name`` of ``kl``, by ``_call``'s rules where ``PAR_LAYOUT`` is on
    (``macs``: the convolution's), else serial."""
    if _cl.PAR_LAYOUT:
        _cl._call(name, macs, *args, mod=kl)
    else:
        getattr(kl, name)(*args)


def _padded_buffer(shape, pad, c: int, dt):
    """The flat buffer of ``to_channels_last`` with zeros wherever the copy does not write:
    the frame's padding, the lanes past ``c`` of each row and the ``CL_P`` spare values (an
    empty buffer and these slabs: ``np.zeros`` set every value, ~0.15 ms a call for the 3-D
    16->32 input gradient's 1.5 MB, where the slabs are its 30% of the frame; session 26)."""
    size = math.prod(shape)
    flat = np.empty(size + _cl.CL_P, dtype=dt)
    flat[size:] = 0
    full = flat[:size].reshape(shape)
    for d, (lo, hi) in enumerate(pad):
        at = (slice(None),) * (1 + d)
        if lo:
            full[at + (slice(0, lo),)] = 0
        if hi:
            full[at + (slice(shape[1 + d] - hi, None),)] = 0
    if shape[-1] > c:
        full[..., c:] = 0
    return flat


def to_channels_last(x, ps, pad, comp=None, macs: int = 0):
    """(flat, xh): x (N, C, *S) zero-padded into xh (N, *ps, C), the data at the low pads;
    xh is a view of the flat buffer, whose rows hold ``_row`` values, with ``CL_P`` spare
    values at its end (the weight gradient's last block of channels reads past the last
    position; those sums are dropped). ``comp``: also x's compact rows (N * prod(S), >= C),
    from the same pass where the tiles run (``LAYOUT``); ``macs``: the
    convolution's multiply-adds, which pick the copy's parallel variant (``_copy``)."""
    nd, c = x.ndim - 2, x.shape[1]
    shape = (x.shape[0],) + tuple(ps) + (_cl._row(c, x.dtype.itemsize),)
    flat = _padded_buffer(shape, pad, c, x.dtype)
    xh = flat[: math.prod(shape)].reshape(shape)[..., :c]
    kl = _layout_kernels()
    if kl is not None:  # tiles of 16 x 16 (8 x 64 x 16^2 float32: NumPy 0.12 ms, tiles 0.09)
        tab = _frame_table(tuple(x.shape[2:]), tuple(ps), pad, shape[-1])
        x3 = np.ascontiguousarray(x).reshape(x.shape[0], c, -1)
        cf = comp.reshape(-1) if comp is not None else np.empty(0, dtype=x.dtype)
        ccrow = comp.shape[1] if comp is not None else 0
        _copy(kl, "to_cl", macs, x3, tab, math.prod(ps), flat, shape[-1], cf, ccrow)
        return flat, xh
    inner = tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape[2:], pad))
    xh[(slice(None),) + inner] = x.transpose((0,) + tuple(range(2, 2 + nd)) + (1,))
    if comp is not None:
        rows = comp.reshape(x.shape[0], -1, comp.shape[1])[:, :, :c]
        rows[...] = x.reshape(x.shape[0], c, -1).transpose(0, 2, 1)
    return flat, xh


class ClCols:
    """The forward's zero-padded channels-last input (N, *padded, C), kept for the weight
    gradient, which gathers ``conv_cl``'s columns from it without padding x again."""

    __slots__ = ("flat", "xh")  # (``to_channels_last``)

    def __init__(self, flat, xh):
        self.flat, self.xh = flat, xh

    def conj(self) -> ClCols:  # real dtypes only: the direct path takes float32/float64
        return self


# last: conv_direct_cl imports this module at its end, so either may be imported first (the
# names above are used at call time only)
from . import conv_direct_cl as _cl  # noqa: E402
