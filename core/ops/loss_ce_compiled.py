"""Cross-entropy over class indices by the compiled kernels (``_numba_embed_ce.ce_forward`` /
``ce_backward``): float32 logits on NumPy (float64 too where ``act_kernels._COMPILED_DTYPES``
has it), class weights, ``ignore_index`` and every reduction, no label smoothing. Used by
``loss_ops.CrossEntropyIndices``, whose NumPy formula serves everything else and double
backward."""

from __future__ import annotations

import numpy as np

from . import _kernel_split, act_kernels, embedding_ops
from ._kernel_split import split_call


def ce_compiled(xp, x, target, weight, smoothing):
    """The compiled cross-entropy kernels when they serve this call: NumPy, a dtype the
    compiled activations take (``act_kernels._COMPILED_DTYPES``), no label smoothing."""
    if xp is not np or smoothing > 0 or x.dtype not in act_kernels._COMPILED_DTYPES:
        return None
    if x.size == 0 or (weight is not None and weight.dtype != x.dtype):
        return None
    if act_kernels.compiled(np, x) is None:  # numba missing or EMBER_NUMBA=0
        return None
    return embedding_ops.compiled()


def ce_forward_compiled(ctx, kern, x, target, weight, ignore_index, reduction):
    """The loss of (M, C) ``x`` against the class indices ``target``; keeps ``exp(x - max)``
    and the reciprocal row sums for ``ce_backward_compiled``. Rows split over the threads.

    The kernels check the targets (in ``[0, C)`` or ``ignore_index``) as they read them, so
    ``F.cross_entropy`` skips its own two reductions over them on this path; an out-of-range
    target raises PyTorch's ``IndexError`` here."""
    m, c = x.shape
    x_in, x = x, np.ascontiguousarray(x)  # (the input itself is saved: see below)
    t = target.astype(np.int64, copy=False)
    dt = x.dtype
    e = np.empty((m, c), dtype=dt)
    rows = np.empty((2, m), dtype=dt)  # the reciprocal row sums and the per-row losses
    rs, per_row = rows[0], rows[1]
    has_w = weight is not None
    w = weight if has_w else rs[:1]
    k = _consts(dt)
    ign = -(1 << 62) if ignore_index is None else int(ignore_index)
    # short rows: one flat exp pass over the part (see ``ce_forward_short``)
    short = c < kern.SHORT_ROWS
    # one thread for small inputs: the split's bookkeeping costs more than a call of a few us
    if m * c < 2 * _kernel_split._MIN_PER_THREAD:
        sums = np.zeros(2)  # the weight and loss sums of the rows
        if short:
            bad = kern.ce_forward_short(x, t, w, has_w, ign, e, rs, per_row, sums, k)
        else:
            rmax = np.max(x, axis=1) if c >= act_kernels._NUMPY_MAX_MIN_D else per_row[:0]
            bad = kern.ce_forward(x, t, w, has_w, ign, rmax, rmax.size > 0, e, rs, per_row,
                                  sums, k)  # fmt: skip
        if bad >= 0:
            _out_of_bounds(t, bad)
        denom, total = sums.tolist()
    else:
        denom, total = _forward_split(kern, x, t, w, has_w, ign, e, rs, per_row, k, short)
    # e and rs give the softmax (kept unchanged: the graph may be retained); the input array
    # itself (not a contiguous copy, which the graph would take for a constant) serves double
    # backward, which recomputes the softmax
    ctx.save_for_backward(e, x_in, rs)
    ctx.args = (t, None, weight, reduction, 0.0, denom, None, None)
    ctx.kern, ctx.ignore = kern, ign
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return np.asarray(total, dtype=dt)
    # every target ignored: 0/0, which PyTorch returns as nan (without a warning)
    return np.asarray(total / denom if denom else np.nan, dtype=dt)


def _forward_split(kern, x, t, w, has_w, ign, e, rs, per_row, k, short):
    """``ce_forward_compiled``'s kernels over row ranges, one per thread: ``(denom, total)``."""
    m, c = x.shape
    sums = np.zeros((m, 2))  # sums[lo]: weight and loss sums of a part's rows
    bad = {}
    # long rows take their maxima from NumPy's vectorised row max (see act_kernels)
    long_rows = c >= act_kernels._NUMPY_MAX_MIN_D

    def part(lo, hi):  # (the row max too runs on the part's own thread)
        xs = x[lo:hi]
        if short:
            r = kern.ce_forward_short(xs, t[lo:hi], w, has_w, ign, e[lo:hi], rs[lo:hi],
                                      per_row[lo:hi], sums[lo], k)  # fmt: skip
        else:
            rmax = np.max(xs, axis=1) if long_rows else per_row[:0]
            r = kern.ce_forward(xs, t[lo:hi], w, has_w, ign, rmax, long_rows, e[lo:hi],
                                rs[lo:hi], per_row[lo:hi], sums[lo], k)  # fmt: skip
        if r >= 0:
            bad[lo] = lo + r

    split_call(part, m, c, lambda lo, hi: (lo, hi))
    if bad:
        _out_of_bounds(t, bad[min(bad)])
    return sums.sum(axis=0).tolist()


def _out_of_bounds(t, row):
    raise IndexError(f"Target {int(t[row])} is out of bounds.")


def ce_backward_compiled(ctx, grad):
    """The gradient of ``ce_forward_compiled``'s loss with respect to ``x``."""
    t, _, weight, reduction, _, denom, _, _ = ctx.args
    p, rs = ctx.saved_array(0), ctx.saved_array(2)
    m, c = p.shape
    dt = p.dtype
    per_row = reduction == "none"
    if per_row:
        scale = np.ascontiguousarray(grad, dtype=dt).reshape(m)
    else:
        g = float(grad.reshape(()))
        scale = np.array([g if reduction == "sum" else (g / denom if denom else np.nan)], dt)
    has_w = weight is not None
    w = weight if has_w else rs[:1]
    gx = np.empty((m, c), dtype=dt)
    if m * c < 2 * _kernel_split._MIN_PER_THREAD:
        ctx.kern.ce_backward(p, rs, t, w, has_w, ctx.ignore, scale, per_row, gx)
        return gx

    def args(lo, hi):
        sc = scale[lo:hi] if per_row else scale
        return p[lo:hi], rs[lo:hi], t[lo:hi], w, has_w, ctx.ignore, sc, per_row, gx[lo:hi]

    split_call(ctx.kern.ce_backward, m, c, args)
    return gx


_CONSTS = {}


def _consts(dtype):
    k = _CONSTS.get(dtype)
    if k is None:
        k = _CONSTS[dtype] = act_kernels._numba.consts(dtype)
    return k
