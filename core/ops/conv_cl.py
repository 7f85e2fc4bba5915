"""Channels-last columns for convolutions with many input channels (groups = 1).

``im2col`` gathers windows from an (N, C, *S) array: for every (channel, kernel tap) row it
copies runs of one output row's width, which is slow when the spatial size is small and the
channel count large. Moving the input to (N, *S, C) first (one transposing copy) turns the
gather into runs of C contiguous values, and the columns come out as (N * L, prod(k) * C): rows
are output positions. Both GEMMs then read them as they lie: the forward is
``cols @ w_cl.T`` -> (N * L, O) and the weight gradient ``g (O, N * L) @ cols``. Measured at 1
thread (process time), im2col 8 x 128 x 8 x 8 k3: 0.94 -> 0.19 ms, 8 x 64 x 16 x 16: 0.94 ->
0.56 ms; at 16 channels it loses (0.68 -> 0.82 ms). Forward + weight gradient, same clock:
32->32 on 8 x 16 x 16 k3 3.6 -> 3.0 ms, 64->64 8 x 16 x 16 13.0 -> 12.0, 128->128 8 x 8 x 8
10.2 -> 9.4, 3-D 64->64 8^3 17.5 -> 15.7; but 512->512 on 2 x 7 x 7 29 -> 35 (its GEMMs are
slower in this orientation), 1-D 64->64 1.73 -> 1.85 and 1x1 64->256 4.6 -> 5.3: hence the
window of channel counts and the 2-D/3-D, k > 1 rule of ``use_channels_last`` (noise on the
shared machine: ~5-10% between runs).
"""

from __future__ import annotations

import math

from ..backend.mkl_gemm import matmul as mm

MIN_CHANNELS, MAX_CHANNELS = 32, 128
WIDE_COLS = 1024  # as conv.WIDE_COLS


def use_channels_last(channels: int, groups: int, kernel) -> bool:
    return (
        groups == 1
        and MIN_CHANNELS <= channels <= MAX_CHANNELS
        and len(kernel) >= 2
        and any(k > 1 for k in kernel)
    )


def im2col_cl(xp, x, geom):
    """Columns (N * L, prod(kernel) * C) of an (N, C, *in_size) array; a row's order is
    (*kernel, C)."""
    n, c, nd = x.shape[0], x.shape[1], len(geom.kernel)
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(geom.in_size, geom.pad))
    to_last = (0,) + tuple(range(2, 2 + nd)) + (1,)
    if any(lo or hi for lo, hi in geom.pad):
        xh = xp.zeros((n,) + padded + (c,), dtype=x.dtype)
        xh[
            (slice(None),) + tuple(slice(lo, lo + s) for s, (lo, _) in zip(geom.in_size, geom.pad))
        ] = x.transpose(to_last)
    else:
        xh = xp.ascontiguousarray(x.transpose(to_last))
    return cols_from_padded(xp, xh, geom)


def cols_from_padded(xp, xh, geom):
    """``im2col_cl``'s columns from the zero-padded channels-last input xh (N, *padded, C)."""
    n, c = xh.shape[0], xh.shape[-1]
    st = xh.strides
    shape = (n,) + tuple(geom.out_size) + tuple(geom.kernel) + (c,)
    strides = (
        (st[0],)
        + tuple(st[1 + i] * s for i, s in enumerate(geom.stride))
        + tuple(st[1 + i] * d for i, d in enumerate(geom.dilation))
        + (st[-1],)
    )
    v = xp.lib.stride_tricks.as_strided(xh, shape=shape, strides=strides)
    return xp.ascontiguousarray(v).reshape(n * math.prod(geom.out_size), -1)


def weight_cl(xp, w):
    """(O, C, *k) -> (O, prod(k) * C), the row order of ``im2col_cl``."""
    nd = w.ndim - 2
    return xp.ascontiguousarray(w.transpose((0,) + tuple(range(2, 2 + nd)) + (1,))).reshape(
        w.shape[0], -1
    )


def conv_forward_cl(xp, x, w, b, geom):
    """y = conv(x, w) + b through channels-last columns; returns (y, cols)."""
    n, o = x.shape[0], w.shape[0]
    cols = im2col_cl(xp, x, geom)
    y = mm(cols, weight_cl(xp, w).T)  # (N * L, O)
    if b is not None:
        y += b
    y = y.reshape(n, -1, o).transpose(0, 2, 1)
    return xp.ascontiguousarray(y).reshape((n, o) + tuple(geom.out_size)), cols


def weight_grad_cl(xp, cols, g_cf, w_shape):
    """dw from channels-last columns and g as (1, O, N * L) (``_channels_first``)."""
    nd = len(w_shape) - 2
    if cols.shape[0] < WIDE_COLS:
        gw = mm(g_cf[0], cols).reshape((w_shape[0],) + tuple(w_shape[2:]) + (w_shape[1],))
        return xp.ascontiguousarray(gw.transpose((0, nd + 1) + tuple(range(1, nd + 1))))
    # dw^T = cols^T @ g^T (prod(k) * C, O): BLAS's faster orientation for a long reduction
    # (16 x 8192 @ 8192 x 144: 3.4 -> 1.5 ms, 1 thread); the sweep's 128->128 on 8 x 8 x 8
    # (512 columns) was slower this way (ratio 1.1 -> 1.5), hence the same rule as conv.py's
    gwt = mm(cols.T, g_cf[0].T).reshape(tuple(w_shape[2:]) + (w_shape[1], w_shape[0]))
    return xp.ascontiguousarray(gwt.transpose((nd + 1, nd) + tuple(range(nd))))
