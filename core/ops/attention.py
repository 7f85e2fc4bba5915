"""Scaled dot-product attention as one fused Function with an analytic backward.

``softmax(q k^T * scale + bias) @ v`` where the bias gathers the causal mask, a boolean mask
(True = may attend, PyTorch's SDPA convention) or an additive float mask. Dropout on the
attention weights draws its mask from ember's generator.

The raw-array pieces (mask to bias, softmax, ``_attend`` and its backward, the in-graph double
backward) live in ``attention_math`` and are re-exported here.
"""

from __future__ import annotations

import math

import numpy as np  # noqa: F401

from ..autograd.function import Function
from ..backend.device import get_array_module
from ..random import gen_for  # noqa: F401
from ..tensor import Tensor
from . import attention_causal, attention_chunks, attention_kernels
from ._lowp import float32_compute
from .attention_math import (  # noqa: F401  (re-exported: every name stays importable here)
    _attend,
    _attend_backward,
    _attend_grads_in_graph,
    _bias,
    _dead_rows,
    _masked_to_bias,
    _matmul,
    _softmax_,
    _sum_repeats,
)


@float32_compute
class ScaledDotProductAttention(Function):
    """forward(q, k, v, mask, dropout_p, scale, is_causal, return_weights, safe, generator, rep).

    ``mask`` is None, a bool array (True = attend) or a float array added to the scores (its
    gradient is returned when it requires grad). ``rep`` > 1 repeats each key/value head that many
    times (grouped-query attention). Returns ``out`` or ``(out, weights)`` (weights after dropout).
    Double backward recomputes the weights from q and k in the graph
    (``_attend_grads_in_graph``).
    """

    @staticmethod
    def forward(
        ctx, q, k, v, mask, dropout_p, scale, is_causal, return_weights, safe, generator, rep
    ):
        xp = ctx.xp
        kr, vr = k, v
        if rep > 1:
            kr = xp.repeat(k, rep, axis=-3)
            vr = xp.repeat(v, rep, axis=-3)
        ctx.causal_weights = None
        if attention_causal.applies(xp, q, kr, mask, dropout_p, is_causal, return_weights):
            ranges = attention_chunks._chunks(xp, q, kr, vr)
            if ranges is not None:  # a large batch: in chunks on one BLAS thread each
                out, qs, ctx.causal_weights = attention_chunks.causal_forward_chunked(
                    q, kr, vr, scale, ranges
                )
            else:
                out, qs, ctx.causal_weights = attention_causal.causal_forward(q, kr, vr, scale)
            # (the weights live in blocks on ctx; qs stands in for p and pd, which only double
            # backward reads, for their array module and dtype and to see that pd is p)
            ctx.save_for_backward(qs, kr, vr, qs, qs, q, k, v, mask)
            ctx.meta = (scale, rep, v.shape, is_causal, safe)
            ctx.set_materialize_grads(False)
            return out
        # causal alone: the compiled kernel masks while it takes the softmax (no bias array)
        causal = is_causal and mask is None and attention_kernels.available(xp, q.dtype)
        bias = None if causal else _bias(xp, mask, is_causal, q.shape[-2], k.shape[-2], q.dtype)
        qs, p, pd, out = _attend(
            xp, q, kr, vr, scale, bias, safe, dropout_p, generator, causal=causal
        )
        # q, k, v and the mask as given: for double backward, which recomputes from them
        ctx.save_for_backward(qs, kr, vr, p, pd, q, k, v, mask)
        ctx.meta = (scale, rep, v.shape, is_causal, safe)
        ctx.set_materialize_grads(False)
        if return_weights:
            return out, pd
        return out

    @staticmethod
    def backward(ctx, g_out, g_w=None):
        scale, rep, v_shape, is_causal, safe = ctx.meta
        need = ctx.needs_input_grad
        if ctx._tensor_mode:
            _, _, _, _, _, q, k, v, mask = ctx.saved_tensors
            p, pd = ctx.saved_array(3), ctx.saved_array(4)
            # a mask that requires grad stays in the graph; any other is a constant bias
            const = None if mask is None or need[3] else mask._data
            const_bias = _bias(
                get_array_module(p), const, is_causal, q.shape[-2], k.shape[-2], p.dtype
            )
            dq, dk, dv, ds = _attend_grads_in_graph(
                q, k, v, mask if need[3] else None, g_out, g_w, scale, const_bias, safe, p, pd, rep
            )
            return dq, dk, dv, (ds if need[3] else None), None, None, None, None, None, None, None
        qs, k, v, p, pd = ctx.saved_tensors[:5]
        xp = ctx.xp
        if g_out is None and g_w is None:
            return (None,) * 11
        if isinstance(ctx.causal_weights, attention_chunks.CausalChunks):
            dq, dk, dv = attention_chunks.causal_backward_chunked(
                g_out, qs, k, v, ctx.causal_weights, scale, need
            )
            ds = None
        elif ctx.causal_weights is not None:
            dq, dk, dv = attention_causal.causal_backward(
                g_out, qs, k, v, ctx.causal_weights, scale, need
            )
            ds = None
        else:
            dq, dk, dv, ds = _attend_backward(xp, g_out, g_w, qs, k, v, p, pd, scale, need)
        if dv is None and need[2]:
            dv = xp.zeros(v_shape, dtype=v.dtype)
        if rep > 1:
            dk = None if dk is None else _sum_repeats(dk, rep)
            dv = None if dv is None else _sum_repeats(dv, rep)
        dmask = ds if need[3] else None
        return dq, dk, dv, dmask, None, None, None, None, None, None, None


def _heads(x, num_heads, batch_first):
    """(B, L, E) or (L, B, E) -> a (B, heads, L, E // heads) view (no copy); ``x`` an array,
    or a tensor (in the graph, for double backward)."""
    a, b, E = x.shape
    split = x.reshape(a, b, num_heads, E // num_heads)
    axes = (0, 2, 1, 3) if batch_first else (1, 2, 0, 3)
    return split.permute(*axes) if isinstance(x, Tensor) else split.transpose(axes)


def _split(arrays, layout, E):
    """The q, k, v arrays from packed projections: 'qkv', 'q_kv' or 'q_k_v'."""
    a, b, c = arrays
    if layout == "qkv":
        return a[..., :E], a[..., E : 2 * E], a[..., 2 * E :]
    if layout == "q_kv":
        return a, b[..., :E], b[..., E:]
    return a, b, c


@float32_compute
class MultiHeadAttentionCore(Function):
    """Multi-head attention between the in- and out-projections, on the projections' layout.

    forward(a, b, c, mask, dropout_p, num_heads, scale, is_causal, need_weights, safe,
    generator, batch_first, layout): ``layout`` 'qkv' takes one packed (.., 3E) projection in
    ``a`` (self-attention), 'q_kv' takes q and a packed (.., 2E) key/value projection, 'q_k_v'
    three arrays. Heads are strided views, so splitting and merging heads copies nothing; the
    backward writes q/k/v gradients straight into the packed gradient. ``mask`` is None or a float
    array added to the (B, heads, L, S) scores. Returns out (same layout as q) [, weights].
    """

    @staticmethod
    def forward(
        ctx,
        a,
        b,
        c,
        mask,
        dropout_p,
        num_heads,
        scale,
        is_causal,
        need_weights,
        safe,
        generator,
        batch_first,
        layout,
    ):
        xp = ctx.xp
        E = a.shape[-1] // 3 if layout == "qkv" else a.shape[-1]
        q, k, v = _split((a, b, c), layout, E)
        qh, kh, vh = (_heads(t, num_heads, batch_first) for t in (q, k, v))
        out = xp.empty(q.shape[:-1] + (v.shape[-1],), dtype=q.dtype)
        bias = _bias(xp, mask, is_causal, qh.shape[-2], kh.shape[-2], q.dtype)
        qs, p, pd, _ = _attend(
            xp,
            qh,
            kh,
            vh,
            scale,
            bias,
            safe,
            dropout_p,
            generator,
            out=_heads(out, num_heads, batch_first),
        )
        ctx.save_for_backward(a, b, c, qs, p, pd)
        ctx.meta = (num_heads, scale, batch_first, layout, E, mask, is_causal, safe)
        ctx.set_materialize_grads(False)
        return (out, pd) if need_weights else out

    @staticmethod
    def backward(ctx, g_out, g_w=None):
        num_heads, scale, batch_first, layout, E, mask, is_causal, safe = ctx.meta
        need = ctx.needs_input_grad
        if ctx._tensor_mode:
            return MultiHeadAttentionCore._grads_in_graph(ctx, g_out, g_w)
        a, b, c, qs, p, pd = ctx.saved_tensors
        xp = ctx.xp
        grads = [
            xp.empty_like(t) if t is not None and n else None for t, n in zip((a, b, c), need[:3])
        ]
        if g_out is None and g_w is None:
            return (None,) * 13
        _, kh, vh = (_heads(t, num_heads, batch_first) for t in _split((a, b, c), layout, E))
        if layout == "qkv":
            wanted = (need[0],) * 3
            targets = _split((grads[0], None, None), layout, E) if need[0] else (None,) * 3
        elif layout == "q_kv":
            wanted = (need[0], need[1], need[1])
            split_kv = _split((None, grads[1], None), layout, E) if need[1] else (None,) * 3
            targets = (grads[0], split_kv[1], split_kv[2])
        else:
            wanted = tuple(need[:3])
            targets = tuple(grads)
        outs = tuple(None if t is None else _heads(t, num_heads, batch_first) for t in targets)
        g_heads = None if g_out is None else _heads(g_out, num_heads, batch_first)
        _attend_backward(xp, g_heads, g_w, qs, kh, vh, p, pd, scale, wanted, outs)
        return (grads[0], grads[1], grads[2]) + (None,) * 10

    @staticmethod
    def _grads_in_graph(ctx, g_out, g_w):
        """Double backward: the gradients of the packed projections as tensor ops."""
        import ember

        num_heads, scale, batch_first, layout, E, mask, is_causal, safe = ctx.meta
        need = ctx.needs_input_grad
        a, b, c = ctx.saved_tensors[:3]
        p, pd = ctx.saved_array(4), ctx.saved_array(5)
        q, k, v = _split((a, b, c), layout, E)
        qh, kh, vh = (_heads(t, num_heads, batch_first) for t in (q, k, v))
        const_bias = _bias(
            get_array_module(p), mask, is_causal, qh.shape[-2], kh.shape[-2], p.dtype
        )
        heads = _attend_grads_in_graph(
            qh,
            kh,
            vh,
            None,
            _heads(g_out, num_heads, batch_first),
            g_w,
            scale,
            const_bias,
            safe,
            p,
            pd,
            1,
        )[:3]
        dq, dk, dv = (_merge_heads(g, batch_first) for g in heads)
        if layout == "qkv":
            grads = (ember.cat([dq, dk, dv], -1), None, None)
        elif layout == "q_kv":
            grads = (dq, ember.cat([dk, dv], -1), None)
        else:
            grads = (dq, dk, dv)
        return tuple(g if n else None for g, n in zip(grads, need[:3])) + (None,) * 10


def _merge_heads(x, batch_first):
    """The inverse of ``_heads`` on a tensor."""
    B, H, L, d = x.shape
    if batch_first:
        return x.permute(0, 2, 1, 3).reshape(B, L, H * d)
    return x.permute(2, 0, 1, 3).reshape(L, B, H * d)


def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask=None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
    *,
    generator=None,
    need_weights: bool = False,
    safe_softmax: bool = True,
):
    """PyTorch's ``F.scaled_dot_product_attention``: (..., L, E) x (..., S, E) x (..., S, Ev).

    ``attn_mask``: bool (True = take part in attention) or float (added to the scores),
    broadcastable to (..., L, S). ``need_weights=True`` also returns the attention weights
    (after dropout), as MultiheadAttention needs; ``safe_softmax=False`` gives NaN rows where
    every key is masked (MultiheadAttention's weights path) instead of zeros.
    """
    if query.dim() < 2 or key.dim() < 2 or value.dim() < 2:
        raise RuntimeError(
            "scaled_dot_product_attention: query, key and value must be at least "
            f"2-D, got {query.dim()}-D, {key.dim()}-D and {value.dim()}-D"
        )
    qs, ks, vs = query.shape, key.shape, value.shape
    if qs[-1] != ks[-1]:
        raise RuntimeError(
            f"scaled_dot_product_attention: query's last dim ({qs[-1]}) must "
            f"match key's last dim ({ks[-1]})"
        )
    if ks[-2] != vs[-2]:
        raise RuntimeError(
            f"scaled_dot_product_attention: key's sequence length ({ks[-2]}) "
            f"must match value's ({vs[-2]})"
        )
    if not (query.dtype == key.dtype == value.dtype):
        raise RuntimeError(
            "Expected query, key, and value to have the same dtype, but got "
            f"query.dtype: {query.dtype} key.dtype: {key.dtype} and value.dtype: "
            f"{value.dtype} instead."
        )
    if not query.is_floating_point():
        raise RuntimeError(
            f"scaled_dot_product_attention: expected a floating dtype, got {query.dtype}"
        )
    if is_causal and attn_mask is not None:
        raise RuntimeError(
            "_scaled_dot_product_attention: Explicit attn_mask should not be set "
            "when is_causal=True"
        )
    rep = 1
    if enable_gqa and query.dim() >= 3 and qs[-3] != ks[-3]:
        if qs[-3] % ks[-3] != 0 or ks[-3] != vs[-3]:
            raise RuntimeError(
                f"scaled_dot_product_attention: number of heads in key/value "
                f"({ks[-3]}) must divide number of heads in query ({qs[-3]})"
            )
        rep = qs[-3] // ks[-3]
    mask = attn_mask
    if attn_mask is not None:
        if not isinstance(attn_mask, Tensor):
            raise TypeError(f"attn_mask must be a Tensor, got {type(attn_mask).__name__}")
        if attn_mask.dtype.name == "bool" or not attn_mask.requires_grad:
            mask = attn_mask._data  # a constant: bool, or float added to the scores
        # a float mask that requires grad stays a tensor: the op returns its gradient
    sc = 1.0 / math.sqrt(qs[-1]) if scale is None else float(scale)
    return ScaledDotProductAttention.apply(
        query,
        key,
        value,
        mask,
        float(dropout_p),
        sc,
        bool(is_causal),
        bool(need_weights),
        bool(safe_softmax),
        generator,
        rep,
    )
