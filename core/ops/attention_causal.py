"""Causal self-attention (no other mask, no dropout) in blocks of query rows: block ``b``
(rows ``[i0, i1)``) attends only to keys ``[0, i1)``, so the scores, the softmax and the two
products per block skip the masked upper triangle: ~(n + 1) / 2n of the full work for n
blocks, and the saved weights are that much smaller. Only the diagonal square of each block
needs the triangular mask.

Measured on one core (float32, b1 h4 L2048 d16, forward + backward): see docs/kernels.md. The
caller (``ScaledDotProductAttention``) takes this path for NumPy arrays with L == S >= 2 blocks.
"""

from __future__ import annotations

import numpy as np

from ..backend.mkl_gemm import matmul as mm
from . import attention_kernels

BLOCK = 128  # query rows per block


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


def causal_forward(q, k, v, scale, split=True):
    """Returns ``(out, qs, weights)``: ``weights[b]`` the softmax of block ``b`` over its keys.
    The compiled row kernel (``attention_kernels``) does the masked softmax where it applies;
    ``split=False`` keeps it on this thread."""
    L = q.shape[-2]
    qs = q * q.dtype.type(scale)
    kt = np.swapaxes(k, -1, -2)
    out = np.empty(q.shape[:-1] + (v.shape[-1],), dtype=np.result_type(q.dtype, v.dtype))
    tri = _tri_bias(BLOCK, q.dtype)
    weights = []
    for i0 in range(0, L, BLOCK):
        i1 = min(i0 + BLOCK, L)
        s = mm(qs[..., i0:i1, :], kt[..., :, :i1])
        if not attention_kernels.causal_softmax_(s, i0, split):
            s[..., :, i0:i1] += tri[: i1 - i0, : i1 - i0]
            s -= s.max(-1, keepdims=True)
            np.exp(s, out=s)
            s *= 1 / s.sum(-1, keepdims=True)
        np.matmul(s, v[..., :i1, :], out=out[..., i0:i1, :])
        weights.append(s)
    return out, qs, weights


def causal_backward(g, qs, k, v, weights, scale, need, split=True):
    """Gradients of q, k, v (None where ``need`` is False) from the saved block weights."""
    L = qs.shape[-2]
    dq = np.empty_like(qs) if need[0] else None
    dk = np.zeros(k.shape, dtype=k.dtype) if need[1] else None
    dv = np.zeros(v.shape, dtype=v.dtype) if need[2] else None
    vt = np.swapaxes(v, -1, -2)
    for b, i0 in enumerate(range(0, L, BLOCK)):
        i1 = min(i0 + BLOCK, L)
        p = weights[b]
        gb = g[..., i0:i1, :]
        if need[2]:
            dv[..., :i1, :] += mm(np.swapaxes(p, -1, -2), gb)
        ds = mm(gb, vt[..., :, :i1])
        if not attention_kernels.causal_softmax_grad_(ds, p, i0, split):
            ds -= np.einsum("...ij,...ij->...i", ds, p)[..., None]
            ds *= p
        if need[0]:
            np.matmul(ds, k[..., :i1, :], out=dq[..., i0:i1, :])
        if need[1]:
            dk[..., :i1, :] += mm(np.swapaxes(ds, -1, -2), qs[..., i0:i1, :])
    if dq is not None:
        dq *= qs.dtype.type(scale)
    return dq, dk, dv
