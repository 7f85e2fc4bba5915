"""Compiled (numba) kernels for the embedding's weight gradient and for cross-entropy over
class indices.

``scatter_rows``: ``out[idx[i]] += rows[i]`` for the indices that fall in ``[lo, hi)`` (a
thread's share of the vocabulary: each thread scans all indices and writes only its own rows,
so repeated indices need no atomics). ``out`` comes from ``np.zeros``, whose pages the kernel
maps on first write; nothing else passes over the (vocabulary x dim) gradient. The NumPy path
(scipy's one-hot CSR product) allocates a second dense (V, d) result and adds it in, three
passes over 51 MB for a 50k x 256 table.

``ce_forward`` / ``ce_backward``: cross-entropy of (M, C) logits against class indices with
class weights and ``ignore_index`` (no label smoothing), each one call: the forward makes one
exp pass per row (the softmax is kept for the backward, as ``softmax_kernels.softmax_rows_lse``)
and the weighted per-row loss; the backward writes ``p * c_i`` and subtracts ``c_i`` at the
target. On a 512 x 50 input the NumPy path made ~25 NumPy calls (0.22 ms, torch 0.12).

Imported lazily (importing this module imports numba); ``AVAILABLE`` is False without numba.
"""

from __future__ import annotations

import numpy as np

from ._numba_act import AVAILABLE, _jit, _row_max, fexp

__all__ = [
    "AVAILABLE",
    "SHORT_ROWS",
    "scatter_rows",
    "ce_forward",
    "ce_forward_short",
    "ce_backward",
]

# rows shorter than this take ``ce_forward_short`` (64 x 400: 33 us row by row, 39 flat)
SHORT_ROWS = 128


@_jit
def scatter_rows(out, idx, rows, lo, hi, skip):  # pragma: no cover
    # out: (V, d); idx: (n,) int64; rows: (n, d); rows of out outside [lo, hi) or equal to skip
    # (padding_idx, -1 when none) are left alone
    n, d = rows.shape
    for i in range(n):
        r = idx[i]
        if r < lo or r >= hi or r == skip:
            continue
        for j in range(d):
            out[r, j] += rows[i, j]


@_jit
def ce_forward(x, t, w, has_w, ignore, rmax, have_max, e, rs, per_row, sums, k):  # pragma: no cover
    # x, e: (m, C); t: (m,) int64 targets, in [0, C) unless == ignore: the kernel returns the
    # first row whose target is neither (its sums then incomplete), else -1; w: (C,) class
    # weights when has_w; rmax: the row maxima when have_max; e: exp(x - max), rs: (m,) the
    # reciprocal row sums (softmax = e * rs, formed by the backward: one pass less here);
    # per_row: (m,) weighted losses (0 for ignored rows); sums[0] += the weight sum of the
    # rows not ignored, sums[1] += the sum of their losses (float64)
    m, d = x.shape
    zero, one = k[0], k[2]
    total = 0.0
    loss = 0.0
    for i in range(m):
        mx = rmax[i] if have_max else _row_max(x, i, d)
        s = zero
        for j in range(d):
            v = fexp(x[i, j] - mx)
            e[i, j] = v
            s += v
        rs[i] = one / s
        ti = t[i]
        if ti == ignore:
            per_row[i] = zero
            continue
        if ti < 0 or ti >= d:  # the caller raises torch's IndexError for this row
            return i
        wi = w[ti] if has_w else one
        li = (mx + np.log(s) - x[i, ti]) * wi
        per_row[i] = li
        total += wi
        loss += li
    sums[0] += total
    sums[1] += loss
    return -1


@_jit
def ce_forward_short(x, t, w, has_w, ignore, e, rs, per_row, sums, k):  # pragma: no cover
    # ce_forward (no ``rmax``) for short rows (C < SHORT_ROWS), in three passes: the row maxima
    # and ``x - max`` into ``e``, one exp over all of ``e`` as a flat run, then the row sums and
    # losses. Row by row, every row's exp loop ends in scalar remainder iterations (2 of 50),
    # ~30 ns a row: 512 x 50 took 47 us, 33.8 us so (512 x 10: 23.8 -> 15.6 us). ``e`` is
    # C-contiguous; per_row holds the row maxima until the losses replace them.
    m, d = x.shape
    zero, one = k[0], k[2]
    for i in range(m):
        mx = _row_max(x, i, d)
        per_row[i] = mx
        for j in range(d):
            e[i, j] = x[i, j] - mx
    ef = e.reshape(m * d)
    for j in range(m * d):
        ef[j] = fexp(ef[j])
    total = 0.0
    loss = 0.0
    for i in range(m):
        s = zero
        for j in range(d):
            s += e[i, j]
        rs[i] = one / s
        ti = t[i]
        if ti == ignore:
            per_row[i] = zero
            continue
        if ti < 0 or ti >= d:
            return i
        wi = w[ti] if has_w else one
        li = (per_row[i] + np.log(s) - x[i, ti]) * wi
        per_row[i] = li
        total += wi
        loss += li
    sums[0] += total
    sums[1] += loss
    return -1


@_jit
def ce_backward(e, rs, t, w, has_w, ignore, scale, per_row_scale, gx):  # pragma: no cover
    # gx = softmax * c_i, minus c_i at the target, c_i = scale_i * w[t_i] (0 for ignored rows),
    # softmax = e * rs (see ce_forward); scale: (m,) when per_row_scale, else its element 0
    # serves every row
    m, d = e.shape
    for i in range(m):
        ti = t[i]
        si = scale[i] if per_row_scale else scale[0]
        if ti == ignore:
            for j in range(d):
                gx[i, j] = 0
            continue
        c = si * w[ti] if has_w else si
        a = c * rs[i]
        for j in range(d):
            gx[i, j] = e[i, j] * a
        gx[i, ti] -= c
