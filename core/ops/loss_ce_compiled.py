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
    and the reciprocal row sums for ``ce_backward_compiled``. Rows split over the threads."""
    m, c = x.shape
    x_in, x = x, np.ascontiguousarray(x)  # (the input itself is saved: see below)
    t = target.astype(np.int64, copy=False)
    e = np.empty((m, c), dtype=x.dtype)
    rs = np.empty(m, dtype=x.dtype)
    per_row = np.empty(m, dtype=x.dtype)
    # one thread for small inputs: the split's bookkeeping costs more than a call of a few us
    small = m * c < 2 * _kernel_split._MIN_PER_THREAD
    sums = np.zeros((1 if small else m, 2))  # sums[lo]: weight and loss sums of a part's rows
    has_w = weight is not None
    w = weight if has_w else rs[:1]
    k = _consts(x.dtype)
    ign = -(1 << 62) if ignore_index is None else int(ignore_index)
    # long rows take their maxima from NumPy's vectorised row max (see act_kernels)
    long_rows = c >= act_kernels._NUMPY_MAX_MIN_D
    # short rows: one flat exp pass over the part (see ``ce_forward_short``)
    short = c < kern.SHORT_ROWS

    def part(lo, hi):  # (the row max too runs on the part's own thread)
        xs = x[lo:hi]
        if short:
            kern.ce_forward_short(xs, t[lo:hi], w, has_w, ign, e[lo:hi], rs[lo:hi],
                                  per_row[lo:hi], sums[lo], k)  # fmt: skip
            return
        rmax = np.max(xs, axis=1) if long_rows else per_row[:0]
        kern.ce_forward(xs, t[lo:hi], w, has_w, ign, rmax, long_rows, e[lo:hi], rs[lo:hi],
                        per_row[lo:hi], sums[lo], k)  # fmt: skip

    if small:
        part(0, m)
    else:
        split_call(part, m, c, lambda lo, hi: (lo, hi))
    denom, total = (sums[0] if small else sums.sum(axis=0)).tolist()
    # e and rs give the softmax (kept unchanged: the graph may be retained); the input array
    # itself (not a contiguous copy, which the graph would take for a constant) serves double
    # backward, which recomputes the softmax
    ctx.save_for_backward(e, x_in, rs)
    ctx.args = (t, None, weight, reduction, 0.0, denom, None, None)
    ctx.kern, ctx.ignore = kern, ign
    if reduction == "none":
        return per_row
    if reduction == "sum":
        return np.asarray(total, dtype=x.dtype)
    # every target ignored: 0/0, which PyTorch returns as nan (without a warning)
    return np.asarray(total / denom if denom else np.nan, dtype=x.dtype)


def ce_backward_compiled(ctx, grad):
    """The gradient of ``ce_forward_compiled``'s loss with respect to ``x``."""
    t, _, weight, reduction, _, denom, _, _ = ctx.args
    p, rs = ctx.saved_array(0), ctx.saved_array(2)
    m, c = p.shape
    if reduction == "none":
        scale = np.ascontiguousarray(grad, dtype=p.dtype).reshape(m)
    else:
        g = float(grad.reshape(()))
        scale = np.array([g if reduction == "sum" else (g / denom if denom else np.nan)], p.dtype)
    per_row = reduction == "none"
    has_w = weight is not None
    w = weight if has_w else rs[:1]
    gx = np.empty((m, c), dtype=p.dtype)

    def args(lo, hi):
        sc = scale[lo:hi] if per_row else scale
        return p[lo:hi], rs[lo:hi], t[lo:hi], w, has_w, ctx.ignore, sc, per_row, gx[lo:hi]

    if m * c < 2 * _kernel_split._MIN_PER_THREAD:
        ctx.kern.ce_backward(*args(0, m))
    else:
        split_call(ctx.kern.ce_backward, m, c, args)
    return gx


_CONSTS = {}


def _consts(dtype):
    k = _CONSTS.get(dtype)
    if k is None:
        k = _CONSTS[dtype] = act_kernels._numba.consts(dtype)
    return k
