"""Blocked softmax / log_softmax over the last dim of a NumPy array: every pass of a block of
rows (max, shift, exp, row sum, scale) runs while the block is in cache, row sums go through
BLAS ``gemv``, and the backward works block by block the same way.

Measured on one core (float32, 8M elements in rows of 128): ``np.exp`` is ~60% of the forward
whatever the layout; the rest, four simple passes, runs ~2.5x faster on a cached block than
over the whole array. The caller keeps its generic formula for other dims and for CuPy.
"""

from __future__ import annotations

import numpy as np

from .norm_rows import row_blocks


def softmax_last(x2):
    """Softmax of each row of the 2-D array ``x2`` (a fresh array)."""
    m, d = x2.shape
    out = np.empty((m, d), dtype=x2.dtype)
    ones = np.ones(d, dtype=x2.dtype)
    for s in row_blocks(np, m, d):
        xb, ob = x2[s], out[s]
        np.subtract(xb, xb.max(axis=1, keepdims=True), out=ob)
        np.exp(ob, out=ob)
        tot = ob @ ones
        np.reciprocal(tot, out=tot)
        ob *= tot[:, None]
    return out


def softmax_last_backward(g2, out):
    """``out * (g - sum(g * out))`` per row."""
    m, d = out.shape
    gx = np.empty((m, d), dtype=out.dtype)
    for s in row_blocks(np, m, d):
        gb, ob, rb = g2[s], out[s], gx[s]
        dot = np.einsum("ij,ij->i", gb, ob)
        np.subtract(gb, dot[:, None], out=rb)
        rb *= ob
    return gx


def log_softmax_last(x2):
    """log_softmax of each row of the 2-D array ``x2`` (a fresh array)."""
    m, d = x2.shape
    out = np.empty((m, d), dtype=x2.dtype)
    ones = np.ones(d, dtype=x2.dtype)
    step = row_blocks(np, m, d)[0].stop if m else 0
    tmp_ = np.empty((step, d), dtype=x2.dtype)
    for s in row_blocks(np, m, d):
        xb, ob = x2[s], out[s]
        tmp = tmp_[:ob.shape[0]]
        np.subtract(xb, xb.max(axis=1, keepdims=True), out=ob)
        np.exp(ob, out=tmp)
        lse = tmp @ ones
        np.log(lse, out=lse)
        ob -= lse[:, None]
    return out


def log_softmax_last_backward(g2, out):
    """``g - exp(out) * sum(g)`` per row."""
    m, d = out.shape
    gx = np.empty((m, d), dtype=out.dtype)
    ones = np.ones(d, dtype=out.dtype)
    for s in row_blocks(np, m, d):
        gb, rb = g2[s], gx[s]
        tot = gb @ ones
        np.exp(out[s], out=rb)
        rb *= tot[:, None]
        np.subtract(gb, rb, out=rb)
    return gx
