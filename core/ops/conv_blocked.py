"""Blocked im2col + GEMM: the column matrix made and used one cache-sized block at a time.

A convolution with a large column matrix (``C * prod(k)`` rows by ``N * L`` columns) is bound
by memory, not by arithmetic, on a core with a slow path to DRAM: 3-D 2 x 16 x 16^3, k3 has
14 MB of columns, written once by im2col (4.6 ms, about a plain copy's 3 ms for 14 MB on this
machine) and read again by the GEMM, which then runs at ~40 GFLOP/s. Here each sample's output
is cut into runs of its first spatial dim whose columns fit in ``BLOCK_BYTES`` (in L2): the
block is gathered from the window view of the padded input, multiplied at once into its place
in the (N, O, L) output (no output transpose), and dropped. The weight gradient gathers the same
blocks again from x instead of keeping the columns: nothing of the size of the columns is kept
between forward and backward. Measured at 1 thread (process time, forward alone): 3-D 16->32
on 2 x 16^3 k3 12.2 -> 7.9 ms, 2-D 16->16 on 8 x 32^2 k3 2.7 -> 1.8 ms, 32->32 k5 13.8 ->
9.2 ms. Used for NumPy arrays, groups = 1, when the whole column matrix would take at least
``MIN_COLS_BYTES`` and the weight at most ``MAX_WEIGHT_BYTES``, at one BLAS thread
(``set_num_threads(1)``); smaller matrices stay in cache anyway and keep the other layouts, and
a large weight (read again by every block's GEMM) keeps them too.

With unit stride along the last dim (2-D/3-D) the blocks are gathered over wide rows
(``wide_width``): outputs over the whole padded width, so that each tap's window is one
contiguous run per block row; the extra columns are cropped (forward) or meet zeros of g.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend.mkl_gemm import addmm_
from ..backend.mkl_gemm import matmul as mm
from ..backend.threads import num_threads
from .conv_depthwise import pad_spatial

BLOCK_BYTES = 512 << 10  # columns per block: L2 is 2 MB per core here
# use the blocked path from this size of the full column matrix: about L2 (2 MB a core here);
# at 4 MB, half a batch's parts at two threads (conv_split) missed it: 1 thread, process time,
# 64->64 on 4 x 16^2 (2.4 MB of columns) 6.3 -> 4.5 ms a step, 16->16 on 4 x 32^2 2.0 -> 1.8
MIN_COLS_BYTES = 2 << 20
# ... and up to this size of the weight, which every block's GEMM reads again: 256->256 on
# 8 x 14^2 (2.4 MB of weight) went 54 -> 76 ms per step blocked, 128->128 on 4 x 28^2 (0.6 MB)
# 34 -> 33, 64->64 on 2 x 56^2 (0.15 MB) 22.7 -> 17.5 (1 thread)
MAX_WEIGHT_BYTES = 256 << 10
WIDE_ROWS = True  # gather over wide rows where the stride allows (``wide_width``)


def use_blocked(xp, x, w_shape, geom) -> bool:
    """True where the blocked path applies: NumPy, groups = 1, a large column matrix, one BLAS
    thread. With a pool of BLAS threads each of the ~100 small products synchronises its
    threads, and on a busy machine that collapses (16->16 on 8 x 32^2 at 2 threads, load ~10:
    88 -> 736 ms per step), so a pool keeps the unblocked paths' three large GEMMs. (At two
    threads with MKL, ``conv_split`` runs convolutions with ``num_threads() == 1``, so this
    path applies there too.)"""
    if xp is not np or geom.groups != 1 or x.dtype.kind not in "fc" or num_threads() != 1:
        return False
    if 0 in x.shape or 0 in geom.out_size:
        return False
    rows = x.shape[1] * math.prod(geom.kernel)
    cols = x.shape[0] * math.prod(geom.out_size)
    if w_shape[0] * rows * x.dtype.itemsize > MAX_WEIGHT_BYTES:
        return False
    return rows * cols * x.dtype.itemsize >= MIN_COLS_BYTES


def _windows(x, geom):
    """The padded input's windows as a view (N, C, *kernel, *out_size)."""
    xpad = pad_spatial(np, x, geom.pad)
    st = xpad.strides
    shape = xpad.shape[:2] + tuple(geom.kernel) + tuple(geom.out_size)
    strides = (
        st[:2]
        + tuple(a * d for a, d in zip(st[2:], geom.dilation))
        + tuple(a * s for a, s in zip(st[2:], geom.stride))
    )
    return np.lib.stride_tricks.as_strided(xpad, shape=shape, strides=strides, writeable=False)


def wide_width(geom) -> int | None:
    """The padded width of the last dim where the wide-row gather applies (2-D/3-D, unit stride
    along the last dim), else None.

    Wide rows: every output row is computed over the padded width ``Wp`` instead of ``W_out``
    (``Wp - W_out = d * (k - 1)`` extra columns, cropped from the output, zero in the weight
    gradient's g). A tap's window over such rows is then one run of ``H_out * Wp`` contiguous
    values of the padded input, not ``H_out`` runs of ``W_out``, and the gather copies 2.5-4x
    faster (1 thread: 3-D 16 ch 16^3 k3 2.36 -> 0.58 ms, 32 ch 5.1 -> 1.3; 2-D 16 ch 8 x 32^2
    0.53 -> 0.20) for 6-12% more GEMM columns."""
    if not WIDE_ROWS or len(geom.kernel) < 2 or geom.stride[-1] != 1:
        return None
    lo, hi = geom.pad[-1]
    return geom.in_size[-1] + lo + hi


def _wide_windows(x, geom):
    """The windows over wide rows as a view (N, C, *kernel, *out_size[:-1], Wp).

    The padded input lies in a flat buffer with ``d * (k - 1)`` spare values at its end: the
    wide columns of a row run on into the next row (or past the end), values that only ever
    reach the cropped outputs (forward) or meet zeros of g (weight gradient)."""
    n, c, nd = x.shape[0], x.shape[1], len(geom.kernel)
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(geom.in_size, geom.pad))
    size = n * c * math.prod(padded)
    buf = np.zeros(size + geom.dilation[-1] * (geom.kernel[-1] - 1), dtype=x.dtype)
    xpad = buf[:size].reshape((n, c) + padded)
    xpad[
        (slice(None), slice(None))
        + tuple(slice(lo, lo + s) for s, (lo, _) in zip(geom.in_size, geom.pad))
    ] = x
    st = xpad.strides
    shape = (n, c) + tuple(geom.kernel) + tuple(geom.out_size[:-1]) + (padded[-1],)
    strides = (
        st[:2]
        + tuple(a * d for a, d in zip(st[2:], geom.dilation))
        + tuple(a * s for a, s in zip(st[2 : 1 + nd], geom.stride))
        + (st[-1],)
    )
    return np.lib.stride_tricks.as_strided(buf, shape=shape, strides=strides, writeable=False)


def _blocks(x, geom, wide=False):
    """Yield (sample, column slice, block columns (R, m)) over all samples and blocks; the
    block array is a reused buffer, valid until the next step. ``wide``: over the wide rows
    of ``_wide_windows`` (columns ``prod(out_size[:-1]) * Wp`` a sample)."""
    v = _wide_windows(x, geom) if wide else _windows(x, geom)
    nd = len(geom.kernel)
    rows = x.shape[1] * math.prod(geom.kernel)
    first, inner = v.shape[2 + nd], math.prod(v.shape[3 + nd :])
    step = max(1, min(first, BLOCK_BYTES // (rows * x.dtype.itemsize * inner)))
    buf = np.empty(rows * step * inner, dtype=x.dtype)
    lead = (slice(None),) * (1 + nd)  # channel and kernel dims
    for i in range(x.shape[0]):
        for p0 in range(0, first, step):
            p1 = min(first, p0 + step)
            sub = v[(i,) + lead + (slice(p0, p1),)]
            blk = buf[: rows * (p1 - p0) * inner].reshape(sub.shape)
            np.copyto(blk, sub)
            yield i, slice(p0 * inner, p1 * inner), blk.reshape(rows, -1)


def blocked_forward(x, w, b, geom):
    """y = conv(x, w) + b, (N, O, *out_size), by blocked im2col + GEMM."""
    n, o = x.shape[0], w.shape[0]
    dtype = np.result_type(x, w)
    w2 = w.reshape(o, -1)
    wp = wide_width(geom)
    lead = (n, o) + tuple(geom.out_size[:-1])
    y = np.empty((n, o, math.prod(lead[2:]) * (wp or geom.out_size[-1])), dtype=dtype)
    for i, cols, blk in _blocks(x, geom, wide=wp is not None):
        mm(w2, blk, out=y[i, :, cols])
    if wp is not None:  # crop the wide rows
        y = np.ascontiguousarray(y.reshape(lead + (wp,))[..., : geom.out_size[-1]])
    y = y.reshape((n, o) + tuple(geom.out_size))
    if b is not None:
        y += b.reshape((-1,) + (1,) * len(geom.kernel))
    return y


def blocked_weight_grad(x, g, w_shape, geom):
    """d conv(x, w) / dw applied to g (N, O, *out_size), the columns gathered again by block."""
    n, o = g.shape[0], g.shape[1]
    wp = wide_width(geom)
    # wide rows read values past each row's end into the products with g's zero columns: only
    # where x is finite (0 * inf is NaN); a sum is a cheap test (it may overflow: then narrow)
    wide = wp is not None and bool(np.isfinite(x.sum()))
    if wide:
        gpad = np.zeros(g.shape[:-1] + (wp,), dtype=g.dtype)
        gpad[..., : g.shape[-1]] = g
        g3 = gpad.reshape(n, o, -1)
    else:
        g3 = g.reshape(n, o, -1)
    # dw^T (R, O) = blocks @ g^T: BLAS's faster orientation for these long, thin products
    gwt = np.zeros((math.prod(w_shape[1:]), o), dtype=np.result_type(x, g))
    for i, cols, blk in _blocks(x, geom, wide=wide):
        addmm_(gwt, blk, g3[i, :, cols].T)
    return np.ascontiguousarray(gwt.T).reshape(w_shape)
