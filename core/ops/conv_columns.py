"""The column layout of a convolution, on NumPy or CuPy through ``xp``: the strided windows of
a padded input, ``im2col`` (the columns a GEMM with the weight turns into the output) and its
adjoint ``col2im``. ``conv.py`` chooses when they are used; the direct, channels-last and
blocked paths build their own layouts (``conv_direct``, ``conv_cl``, ``conv_blocked``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .conv_depthwise import offsets, pad_spatial, tap_slices

if TYPE_CHECKING:
    from .conv import ConvGeom


def windows(xp, xpad, kernel, stride, dilation, out_size):
    """A strided view (N, C, *out_size, *kernel) of the windows of a padded (N, C, *S) array."""
    st = xpad.strides
    spatial = st[2:]
    shape = xpad.shape[:2] + tuple(out_size) + tuple(kernel)
    strides = (
        st[:2]
        + tuple(a * s for a, s in zip(spatial, stride))
        + tuple(a * d for a, d in zip(spatial, dilation))
    )
    return xp.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides)


def im2col(xp, x, geom: ConvGeom, batched: bool = False):
    """Columns (groups, C/g * prod(kernel), N * L) of an (N, C, *in_size) array.

    ``batched=True`` gives (N, groups, C/g * prod(kernel), L) instead: one matrix per sample, so
    that the product with the weight comes out in (N, C_out, L) order with no transpose.
    """
    nd = len(geom.kernel)
    v = windows(
        xp, pad_spatial(xp, x, geom.pad), geom.kernel, geom.stride, geom.dilation, geom.out_size
    )
    taps = tuple(range(2 + nd, 2 + 2 * nd))
    rows = x.shape[1] // geom.groups * math.prod(geom.kernel)
    if batched:  # (N, C, *out, *k) -> (N, C, *k, *out)
        v = v.transpose((0, 1) + taps + tuple(range(2, 2 + nd)))
        return xp.ascontiguousarray(v).reshape(x.shape[0], geom.groups, rows, -1)
    # (N, C, *out, *k) -> (C, *k, N, *out): each row of a group's matrix is one (c, k) tap.
    v = v.transpose((1,) + taps + (0,) + tuple(range(2, 2 + nd)))
    return xp.ascontiguousarray(v).reshape(geom.groups, rows, -1)


def col2im(xp, cols, n, channels, geom: ConvGeom):
    """The adjoint of im2col: sum columns (groups, C/g * prod(k), N * L) back into (N, C, *S)."""
    nd = len(geom.kernel)
    cols = cols.reshape((channels,) + geom.kernel + (n,) + geom.out_size)
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(geom.in_size, geom.pad))
    acc = xp.zeros((channels, n) + padded, dtype=cols.dtype)
    for offset in offsets(geom.kernel):
        acc[tap_slices(geom, offset)] += cols[(slice(None),) + offset]
    crop = (slice(None), slice(None)) + tuple(
        slice(lo, lo + s) for s, (lo, _) in zip(geom.in_size, geom.pad)
    )
    return xp.ascontiguousarray(acc[crop].transpose((1, 0) + tuple(range(2, 2 + nd))))
