"""Causal self-attention (no other mask, no dropout) in blocks of query rows: block ``b``
(rows ``[i0, i1)``) attends only to keys ``[0, i1)``, so the scores, the softmax and the two
products per block skip the masked upper triangle: ~(n + 1) / 2n of the full work for n
blocks, and the saved weights are that much smaller. Only the diagonal square of each block
needs the triangular mask.

The blocks run a group of (batch, head) matrices at a time (``GROUP_BYTES`` of scores: one
matrix from L = 1024 in float32), so that a block's scores (``BLOCK`` x L: 1 MiB at L = 2048)
stay in the core's L2 cache between the product that writes them, the softmax and the product
that reads them; all heads at once made a 4 MiB block at b1 h4 L2048 that went through memory
three times (1 thread: forward 24.3 -> 19.9 ms, backward 36.1 -> 26.0 ms). The backward adds
into ``dk`` / ``dv`` with one MKL call a matrix (``addmm_``: no temporary product). With
several threads the groups are shared out over the workers, one BLAS thread each
(``attention_chunks._run``); a single group splits its softmax rows instead.

Measured on one core (float32, b1 h4 L2048 d16, forward + backward): see docs/kernels.md. The
caller (``ScaledDotProductAttention``) takes this path for NumPy arrays with L == S >= 2 blocks.
"""

from __future__ import annotations

import numpy as np

from ..backend import mkl_gemm
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
# Matrices whose blocks run as one stacked product (``_groups``): a group's block scores up to
# this many bytes. One matrix a block had ~12 Python calls of a few us around products of
# 2 MFLOP at L = 256, d = 64; at two threads the workers also queued on the GIL for them.
GROUP_BYTES = 512 << 10


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


def _groups(n: int, L: int, itemsize: int) -> list[tuple[int, int]]:
    """The matrices ``[0, n)`` in groups that run each block as one stacked product: as many
    matrices as keep a block's scores (``BLOCK`` x L each) within ``GROUP_BYTES``, so that a
    group's Python calls serve several matrices (one at L >= 512 in float32)."""
    per = max(1, GROUP_BYTES // (BLOCK * L * itemsize))
    return [(lo, min(lo + per, n)) for lo in range(0, n, per)]


def _each(fn, groups, n: int, L: int, split: bool) -> None:
    """``fn(lo, hi, split_rows)`` for every group of matrices (``_groups``) of ``n`` in all, of
    ``L`` rows each: with several threads and groups and enough work, the groups over the
    workers (one BLAS thread each, the row kernels unsplit); else in turn, the row kernels
    split when ``split``."""
    if split and len(groups) >= 2 and n * L * L // 2 >= SPLIT_MIN_SCORES and num_threads() > 1:
        attention_chunks._run(lambda lo, hi: fn(lo, hi, False), groups)
        return
    for lo, hi in groups:
        fn(lo, hi, split)


def _add_products(c, a, b) -> None:
    """``c += a @ b`` for stacks of matrices: MKL's one call per matrix with ``beta = 1`` where
    it is active (``addmm_``), else NumPy's stacked product and one add (``addmm_``'s own
    fallback, bit for bit)."""
    if mkl_gemm.active():
        for i in range(len(c)):
            addmm_(c[i], a[i], b[i])
    else:
        c += np.matmul(a, b)


def causal_forward(q, k, v, scale, split=True):
    """Returns ``(out, qs, weights)``: ``weights`` holds ``(lo, hi, blocks)`` per group of
    matrices ``[lo, hi)`` (the leading axes flattened), ``blocks[b]`` being ``(p, None)``, the
    softmax of block ``b`` of those matrices over its keys, or ``(e, inv)``, its unnormalised
    weights and their rows' reciprocal sums (``UNNORMALISED``). The compiled row kernels
    (``attention_kernels``) do the masked softmax where they apply; ``split=False`` keeps all
    the work on this thread."""
    L = q.shape[-2]
    lead = np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    qs = q * q.dtype.type(scale)
    q3, k3, v3 = (_mats(a, lead) for a in (qs, k, v))
    out = np.empty(lead + (L, v.shape[-1]), dtype=np.result_type(q.dtype, v.dtype))
    o3 = out.reshape((-1,) + out.shape[-2:])
    tri = _tri_bias(BLOCK, q.dtype)
    groups = _groups(len(q3), L, q3.itemsize)
    weights = [None] * len(groups)
    index = {g: j for j, g in enumerate(groups)}

    def one(lo, hi, split_rows):
        kt = k3[lo:hi].transpose(0, 2, 1)
        blocks = []
        for i0 in range(0, L, BLOCK):
            i1 = min(i0 + BLOCK, L)
            s = mm(q3[lo:hi, i0:i1], kt[:, :, :i1])
            if UNNORMALISED:
                inv = np.empty((hi - lo, i1 - i0), dtype=s.dtype)
                if attention_kernels.causal_exp_(s, i0, inv, split_rows):
                    ob = o3[lo:hi, i0:i1]
                    mm(s, v3[lo:hi, :i1], out=ob)
                    ob *= inv[:, :, None]
                    blocks.append((s, inv))
                    continue
            if not attention_kernels.causal_softmax_(s, i0, split_rows):
                s[:, :, i0:i1] += tri[: i1 - i0, : i1 - i0]
                s -= s.max(-1, keepdims=True)
                np.exp(s, out=s)
                s *= 1 / s.sum(-1, keepdims=True)
            mm(s, v3[lo:hi, :i1], out=o3[lo:hi, i0:i1])
            blocks.append((s, None))
        weights[index[(lo, hi)]] = (lo, hi, blocks)

    _each(one, groups, len(q3), L, split)
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
    groups = [(lo, hi) for lo, hi, _ in weights]
    blocks_of = {(lo, hi): blocks for lo, hi, blocks in weights}

    def one(lo, hi, split_rows):
        vt = v3[lo:hi].transpose(0, 2, 1)
        for b, i0 in enumerate(range(0, L, BLOCK)):
            i1 = min(i0 + BLOCK, L)
            p, inv = blocks_of[(lo, hi)][b]
            gb = g3[lo:hi, i0:i1]
            if inv is not None:  # p is exp(s - max): p^T (g inv) and (g inv) v^T
                gb = gb * inv[:, :, None]
            if need[2]:
                _add_products(dv3[lo:hi, :i1], p.transpose(0, 2, 1), gb)
            ds = mm(gb, vt[:, :, :i1])
            if inv is not None:
                if not attention_kernels.causal_exp_grad_(ds, p, i0, inv, split_rows):
                    ds -= (np.einsum("mij,mij->mi", ds, p) * inv)[:, :, None]
                    ds *= p
            elif not attention_kernels.causal_softmax_grad_(ds, p, i0, split_rows):
                ds -= np.einsum("mij,mij->mi", ds, p)[:, :, None]
                ds *= p
            if need[0]:
                mm(ds, k3[lo:hi, :i1], out=dq3[lo:hi, i0:i1])
            if need[1]:
                _add_products(dk3[lo:hi, :i1], ds.transpose(0, 2, 1), q3[lo:hi, i0:i1])

    _each(one, groups, len(q3), L, split)
    if dq is not None:
        dq *= qs.dtype.type(scale)
    return _sum_to(dq, qs.shape), _sum_to(dk, k.shape), _sum_to(dv, v.shape)
