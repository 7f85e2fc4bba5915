"""Causal self-attention (no other mask, no dropout) in blocks of query rows: block ``b``
(rows ``[i0, i1)``) attends only to keys ``[0, i1)``, so the scores, the softmax and the two
products per block skip the masked upper triangle: ~(n + 1) / 2n of the full work for n
blocks, and the saved weights are that much smaller. Only the diagonal square of each block
needs the triangular mask.

The blocks run one (batch, head) matrix at a time, so that a block's scores (``BLOCK`` x L:
1 MiB at L = 2048 in float32) stay in the core's L2 cache between the product that writes
them, the softmax and the product that reads them; all heads at once made a 4 MiB block at
b1 h4 L2048 that went through memory three times (1 thread: forward 24.3 -> 19.9 ms, backward
36.1 -> 26.0 ms). The backward adds into ``dk`` / ``dv`` with one MKL call (``addmm_``: no
temporary product). With several threads the matrices are shared out over the workers, one
BLAS thread each (``attention_chunks._run``); a single matrix splits its softmax rows instead.

Measured on one core (float32, b1 h4 L2048 d16, forward + backward): see docs/kernels.md. The
caller (``ScaledDotProductAttention``) takes this path for NumPy arrays with L == S >= 2 blocks.
"""

from __future__ import annotations

import numpy as np

from ..backend.mkl_gemm import addmm_
from ..backend.mkl_gemm import matmul as mm
from ..backend.threads import num_threads
from . import attention_chunks, attention_kernels

BLOCK = 128  # query rows per block
# the matrices go to the workers from this many causal scores in all (n * L * L / 2): below
# it the pool's hand-off costs more than it saves (b1 h2 L256 d16: 0.86 ms a step at 1
# thread, 1.08 with the two matrices on two workers)
SPLIT_MIN_SCORES = 1 << 20
# Keep each block's weights unnormalised (exp(s - max)) with their rows' reciprocal sums and
# scale the d-wide output rows (and, in backward, the d-wide gradient rows) instead of the
# key-wide weights: one pass over the block less (the compiled kernels only).
UNNORMALISED = True


def applies(xp, q, k, mask, dropout_p, is_causal, return_weights) -> bool:
    """Whether the blocked causal path runs for these arguments."""
    return (
        is_causal
        and mask is None
        and dropout_p == 0
        and not return_weights
        and xp is np
        and q.shape[-2] == k.shape[-2] >= 2 * BLOCK
        and q.dtype.kind == "f"
    )


def _tri_bias(n, dtype):
    """(n, n) additive mask: 0 on and below the diagonal, -inf above."""
    bias = np.zeros((n, n), dtype=dtype)
    bias[np.triu_indices(n, 1)] = -np.inf
    return bias


def _mats(a, lead):
    """``a`` broadcast to the leading shape ``lead`` as a stack of matrices (n, rows, cols)
    (a view where ``a`` is C-ordered and not broadcast, else a copy)."""
    return np.broadcast_to(a, lead + a.shape[-2:]).reshape((-1,) + a.shape[-2:])


def _sum_to(x, shape):
    """``x`` summed over the leading axes that ``shape`` broadcast (None passes through)."""
    if x is None or x.shape == shape:
        return x
    extra = x.ndim - len(shape)
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape[:-2]) if n == 1 and x.shape[extra + i] != 1
    )
    return x.sum(axis=axes).reshape(shape)


def _each(fn, n: int, L: int, split: bool) -> None:
    """``fn(i, split_rows)`` for every matrix ``i < n`` of ``L`` rows: with several threads and
    matrices and enough work, the matrices over the workers (one BLAS thread each, the row
    kernels unsplit); else in turn, the row kernels split when ``split``."""
    if split and n >= 2 and n * L * L // 2 >= SPLIT_MIN_SCORES and num_threads() > 1:

        def part(lo, hi):
            for i in range(lo, hi):
                fn(i, False)

        attention_chunks._run(part, [(i, i + 1) for i in range(n)])
        return
    for i in range(n):
        fn(i, split)


def causal_forward(q, k, v, scale, split=True):
    """Returns ``(out, qs, weights)``: ``weights[i][b]`` is ``(p, None)``, the softmax of block
    ``b`` of matrix ``i`` (the leading axes flattened) over its keys, or ``(e, inv)``, its
    unnormalised weights and their rows' reciprocal sums (``UNNORMALISED``). The compiled row
    kernels (``attention_kernels``) do the masked softmax where they apply; ``split=False``
    keeps all the work on this thread."""
    L = q.shape[-2]
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    qs = q * q.dtype.type(scale)
    q3, k3, v3 = (_mats(a, lead) for a in (qs, k, v))
    out = np.empty(lead + (L, v.shape[-1]), dtype=np.result_type(q.dtype, v.dtype))
    o3 = out.reshape((-1,) + out.shape[-2:])
    tri = _tri_bias(BLOCK, q.dtype)
    weights = [None] * len(q3)

    def one(i, split_rows):
        kt = k3[i].T
        blocks = []
        for i0 in range(0, L, BLOCK):
            i1 = min(i0 + BLOCK, L)
            s = mm(q3[i, i0:i1], kt[:, :i1])
            if UNNORMALISED:
                inv = np.empty(i1 - i0, dtype=s.dtype)
                if attention_kernels.causal_exp_(s, i0, inv, split_rows):
                    ob = o3[i, i0:i1]
                    mm(s, v3[i, :i1], out=ob)
                    ob *= inv[:, None]
                    blocks.append((s, inv))
                    continue
            if not attention_kernels.causal_softmax_(s, i0, split_rows):
                s[:, i0:i1] += tri[: i1 - i0, : i1 - i0]
                s -= s.max(-1, keepdims=True)
                np.exp(s, out=s)
                s *= 1 / s.sum(-1, keepdims=True)
            mm(s, v3[i, :i1], out=o3[i, i0:i1])
            blocks.append((s, None))
        weights[i] = blocks

    _each(one, len(q3), L, split)
    return out, qs, weights


def causal_backward(g, qs, k, v, weights, scale, need, split=True):
    """Gradients of q, k, v (None where ``need`` is False) from the saved block weights."""
    L = qs.shape[-2]
    lead = np.broadcast_shapes(g.shape[:-2], qs.shape[:-2], k.shape[:-2], v.shape[:-2])
    g3, q3, k3, v3 = (_mats(a, lead) for a in (g, qs, k, v))
    dq = np.empty(lead + qs.shape[-2:], dtype=qs.dtype) if need[0] else None
    dk = np.zeros(lead + k.shape[-2:], dtype=k.dtype) if need[1] else None
    dv = np.zeros(lead + v.shape[-2:], dtype=v.dtype) if need[2] else None
    dq3, dk3, dv3 = (None if a is None else a.reshape((-1,) + a.shape[-2:]) for a in (dq, dk, dv))

    def one(i, split_rows):
        vt = v3[i].T
        for b, i0 in enumerate(range(0, L, BLOCK)):
            i1 = min(i0 + BLOCK, L)
            p, inv = weights[i][b]
            gb = g3[i, i0:i1]
            if inv is not None:  # p is exp(s - max): p^T (g inv) and (g inv) v^T
                gb = gb * inv[:, None]
            if need[2]:
                addmm_(dv3[i, :i1], p.T, gb)
            ds = mm(gb, vt[:, :i1])
            if inv is not None:
                if not attention_kernels.causal_exp_grad_(ds, p, i0, inv, split_rows):
                    ds -= (np.einsum("ij,ij->i", ds, p) * inv)[:, None]
                    ds *= p
            elif not attention_kernels.causal_softmax_grad_(ds, p, i0, split_rows):
                ds -= np.einsum("ij,ij->i", ds, p)[:, None]
                ds *= p
            if need[0]:
                mm(ds, k3[i, :i1], out=dq3[i, i0:i1])
            if need[1]:
                addmm_(dk3[i, :i1], ds.T, q3[i, i0:i1])

    _each(one, len(q3), L, split)
    if dq is not None:
        dq *= qs.dtype.type(scale)
    return _sum_to(dq, qs.shape), _sum_to(dk, k.shape), _sum_to(dv, v.shape)
