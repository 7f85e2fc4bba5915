"""Attention: scaled_dot_product_attention, causal masks (shared with MultiheadAttention)."""

from __future__ import annotations

import math

import numpy as np

from ._context import Sym
from ._ops_basic import _c, dtype_of, rank, typed
from ._registry import fn


# ---- attention ---------------------------------------------------------------------------
def causal_mask(ctx, q, k) -> Sym:
    """Bool [L, S] lower-triangular mask for q's and k's sequence lengths."""
    L, S = q.shape[-2], k.shape[-2]
    qd = isinstance(q.dyn, frozenset) and (q.rank - 2) in q.dyn
    kd = isinstance(k.dyn, frozenset) and (k.rank - 2) in k.dyn
    if not qd and not kd:
        return Sym(ctx.const(np.tril(np.ones((L, S), dtype=bool))), np.zeros((1,), np.bool_))
    shape = ctx.op("Concat", [ctx.dim(q, q.rank - 2), ctx.dim(k, k.rank - 2)], axis=0)
    ones = ctx.op("Expand", [ctx.const(np.asarray(1, np.int64)), shape])
    return Sym(ctx.cast(ctx.op("Trilu", [ones], upper=0), np.bool_), np.zeros((1,), np.bool_))


def apply_mask(ctx, scores: str, mask, like) -> str:
    if mask is None:
        return scores
    if dtype_of(mask) == np.bool_:
        return ctx.op("Where", [ctx.name_of(mask), scores, _c(ctx, -np.inf, like)])
    return ctx.op("Add", [scores, typed(ctx, mask, dtype_of(like))])


def attention_core(ctx, q, k, v, attn_mask, is_causal, scale, q_sym, k_sym):
    """softmax(q k^T * scale + mask) v over the last two axes; returns (out, weights)."""
    r = rank(q_sym)
    perm = list(range(r - 2)) + [r - 1, r - 2]
    kt = ctx.op("Transpose", [k], perm=perm)
    scores = ctx.op("MatMul", [ctx.op("Mul", [q, _c(ctx, scale, q_sym)]), kt])
    if is_causal:
        scores = apply_mask(ctx, scores, causal_mask(ctx, q_sym, k_sym), q_sym)
    scores = apply_mask(ctx, scores, attn_mask, q_sym)
    w = ctx.op("Softmax", [scores], axis=-1)
    return ctx.op("MatMul", [w, v]), w


@fn("scaled_dot_product_attention")
def sdpa(
    ctx, q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False
):
    if enable_gqa and q.shape[-3] != k.shape[-3]:
        rep = q.shape[-3] // k.shape[-3]
        k = Sym(_repeat_heads(ctx, k, rep), k.ex, k.dyn)
        v = Sym(_repeat_heads(ctx, v, rep), v.ex, v.dyn)
    s = scale if scale is not None else 1.0 / math.sqrt(q.shape[-1])
    out, _ = attention_core(ctx, q, k, v, attn_mask, is_causal, s, q, k)
    return out


def _repeat_heads(ctx, t, rep):
    r = t.rank
    x = ctx.unsqueeze(t, [r - 2])  # (..., H, 1, S, E)
    shape = [1] * (r - 2) + [rep, 1, 1]
    x = ctx.op("Tile", [x, ctx.ints([1] * (r - 3) + [1] + shape[-3:])])
    shape = ctx.op(
        "Concat", [ctx.shape_of(t, 0, r - 3), ctx.ints([-1]), ctx.shape_of(t, r - 2)], axis=0
    )
    return ctx.op("Reshape", [x, shape])


@fn("generate_square_subsequent_mask")
def square_subsequent_mask(ctx, sz, device=None, dtype=None):
    """A float (sz, sz) mask: 0 on and below the diagonal, -inf above."""
    shape = ctx.shape_tensor([sz, sz])
    ones = ctx.op("Expand", [ctx.const(np.asarray(1, np.int64)), shape])
    keep = ctx.cast(ctx.op("Trilu", [ones], upper=0), np.bool_)
    dt = ctx.out_dtype()
    return ctx.op("Where", [keep, ctx.const(np.asarray(0, dt)), ctx.const(np.asarray(-np.inf, dt))])
