"""Attention in ``ember.nn.functional``: scaled_dot_product_attention, multi_head_attention_forward.

Masks of MultiheadAttention follow PyTorch: a bool ``attn_mask``/``key_padding_mask`` marks the
positions NOT allowed to attend (True = masked), a float one is added to the scores. (The
opposite of ``scaled_dot_product_attention``'s bool mask, where True means "may attend".)
Masks are constants here: no gradient flows into a float mask through multi-head attention.
"""

from __future__ import annotations

import math
import warnings

from ... import ops
from ..._torch_function import torch_function_dispatch
from ...amp._state import autocast_op
from ...backend.device import get_array_module
from ...backends.cuda import _check_sdp_backend, _sdp
from ...ops.attention import MultiHeadAttentionCore, _masked_to_bias
from ...ops.attention import scaled_dot_product_attention as _sdpa
from ...tensor import Tensor
from ._linear import linear

__all__ = ["scaled_dot_product_attention", "multi_head_attention_forward"]


@torch_function_dispatch(3)
@autocast_op("scaled_dot_product_attention")
def scaled_dot_product_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attn_mask: Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    scale: float | None = None,
    enable_gqa: bool = False,
) -> Tensor:
    r"""``softmax(Q K^T * scale + mask) V`` with optional causal mask and dropout.

    Args:
        query: (..., L, E); key: (..., S, E); value: (..., S, Ev).
        attn_mask: bool (True = take part in attention) or float (added to the scores),
            broadcastable to (..., L, S).
        dropout_p: dropout probability on the attention weights (always applied when > 0).
        is_causal: apply a lower-triangular (top-left aligned) causal mask.
        scale: defaults to ``1 / sqrt(E)``.
        enable_gqa: allow fewer key/value heads than query heads (grouped-query attention).
    """
    if not _sdp["math"]:  # sdpa_kernel / enable_math_sdp(False) restricted the backends
        _check_sdp_backend(query.device.type)
    if attn_mask is not None and type(attn_mask) is not Tensor:
        # ember.nn.attention.bias.CausalBias (a tensor subclass in PyTorch) chooses its path
        sdpa = getattr(attn_mask, "_scaled_dot_product_attention", None)
        if sdpa is not None:
            return sdpa(query, key, value, dropout_p, is_causal, scale, enable_gqa)
    out = _sdpa(query, key, value, attn_mask, dropout_p, is_causal, scale, enable_gqa)
    if out.dim() == 4 and not dropout_p and _heads_transposed(query) and out.shape == query.shape:
        # PyTorch's (fused) output keeps the query's memory layout: a query made by
        # ``x.view(B, T, H, D).transpose(1, 2)`` gives an output whose ``transpose(1, 2)`` is
        # contiguous, and scripts ``.view(B, T, C)`` it without ``.contiguous()`` (with
        # dropout torch takes its math path, whose output is contiguous)
        out = out.transpose(1, 2).contiguous().transpose(1, 2)
    return out


def _heads_transposed(t: Tensor) -> bool:
    """Whether ``t`` (B, H, L, E) is laid out as (B, L, H, E) in memory (its heads stride less
    than its positions: a ``view(B, L, H, E).transpose(1, 2)``, of a split too)."""
    return t.shape[1] > 1 and t.shape[2] > 1 and t.stride(1) < t.stride(2)


def _canonical_mask(mask, name: str, dtype):
    """None, or the mask as a raw float array of ``dtype`` (bool True -> -inf)."""
    if mask is None:
        return None
    data = mask._data
    xp = get_array_module(data)
    if data.dtype == bool:
        return _masked_to_bias(xp, data, dtype)
    if data.dtype.kind != "f":
        raise AssertionError(f"only bool and floating types of {name} are supported")
    return data.astype(dtype, copy=False)


def _shape_check(query, key, value, key_padding_mask, attn_mask, num_heads) -> bool:
    """PyTorch's _mha_shape_check: True for batched (3-D) input, False for unbatched (2-D)."""
    if query.dim() == 3:
        if key.dim() != 3 or value.dim() != 3:
            raise AssertionError(
                "For batched (3-D) `query`, expected `key` and `value` to be "
                f"3-D but found {key.dim()}-D and {value.dim()}-D tensors "
                "respectively"
            )
        if key_padding_mask is not None and key_padding_mask.dim() != 2:
            raise AssertionError(
                "For batched (3-D) `query`, expected `key_padding_mask` to be "
                f"`None` or 2-D but found {key_padding_mask.dim()}-D tensor "
                "instead"
            )
        if attn_mask is not None and attn_mask.dim() not in (2, 3):
            raise AssertionError(
                "For batched (3-D) `query`, expected `attn_mask` to be `None`, "
                f"2-D or 3-D but found {attn_mask.dim()}-D tensor instead"
            )
        return True
    if query.dim() == 2:
        if key.dim() != 2 or value.dim() != 2:
            raise AssertionError(
                "For unbatched (2-D) `query`, expected `key` and `value` to be "
                f"2-D but found {key.dim()}-D and {value.dim()}-D tensors "
                "respectively"
            )
        if key_padding_mask is not None and key_padding_mask.dim() != 1:
            raise AssertionError(
                "For unbatched (2-D) `query`, expected `key_padding_mask` to be "
                f"`None` or 1-D but found {key_padding_mask.dim()}-D tensor "
                "instead"
            )
        if attn_mask is not None:
            if attn_mask.dim() not in (2, 3):
                raise AssertionError(
                    "For unbatched (2-D) `query`, expected `attn_mask` to be "
                    f"`None`, 2-D or 3-D but found {attn_mask.dim()}-D tensor "
                    "instead"
                )
            if attn_mask.dim() == 3:
                expected = (num_heads, query.shape[0], key.shape[0])
                if tuple(attn_mask.shape) != expected:
                    raise AssertionError(
                        f"Expected `attn_mask` shape to be {expected} but got "
                        f"{tuple(attn_mask.shape)}"
                    )
        return False
    raise AssertionError(
        "query should be unbatched 2D or batched 3D tensor but received "
        f"{query.dim()}-D query tensor"
    )


def _project(query, key, value, in_proj_weight, in_proj_bias, separate, q_w, k_w, v_w, E):
    """In-projections; returns (arrays, layout) for MultiHeadAttentionCore."""
    if not separate:
        if key is value:
            if query is key:  # self-attention: one matmul for q, k and v
                return (linear(query, in_proj_weight, in_proj_bias), None, None), "qkv"
            b_q = b_kv = None
            if in_proj_bias is not None:
                b_q, b_kv = in_proj_bias[:E], in_proj_bias[E:]
            return (
                linear(query, in_proj_weight[:E], b_q),
                linear(key, in_proj_weight[E:], b_kv),
                None,
            ), "q_kv"
        q_w, k_w, v_w = in_proj_weight[:E], in_proj_weight[E : 2 * E], in_proj_weight[2 * E :]
    b = (
        (None,) * 3
        if in_proj_bias is None
        else (in_proj_bias[:E], in_proj_bias[E : 2 * E], in_proj_bias[2 * E :])
    )
    return (linear(query, q_w, b[0]), linear(key, k_w, b[1]), linear(value, v_w, b[2])), "q_k_v"


def _pad_last(xp, mask, n=1):
    """Append ``n`` zero (= not masked) columns to a float mask."""
    if mask is None:
        return None
    pad = xp.zeros(mask.shape[:-1] + (n,), dtype=mask.dtype)
    return xp.concatenate([mask, pad], axis=-1)


def _mha(
    query,
    key,
    value,
    embed_dim_to_check,
    num_heads,
    in_proj_weight,
    in_proj_bias,
    bias_k,
    bias_v,
    add_zero_attn,
    dropout_p,
    out_proj_weight,
    out_proj_bias,
    training,
    key_padding_mask,
    need_weights,
    attn_mask,
    use_separate_proj_weight,
    q_proj_weight,
    k_proj_weight,
    v_proj_weight,
    average_attn_weights,
    is_causal,
    batch_first,
):
    """Multi-head attention on (L, B, E) inputs, or (B, L, E) with ``batch_first``."""
    is_batched = _shape_check(query, key, value, key_padding_mask, attn_mask, num_heads)
    if not is_batched:
        batch_first = False
        # keep the identities that select the packed in-projection
        if query is key and key is value:
            query = key = value = ops.unsqueeze(query, 1)
        elif key is value:
            query, key = ops.unsqueeze(query, 1), ops.unsqueeze(key, 1)
            value = key
        else:
            query, key, value = (ops.unsqueeze(t, 1) for t in (query, key, value))
        if key_padding_mask is not None:
            key_padding_mask = ops.unsqueeze(key_padding_mask, 0)
    bdim, tdim = (0, 1) if batch_first else (1, 0)
    bsz, tgt_len, embed_dim = query.shape[bdim], query.shape[tdim], query.shape[2]
    src_len = key.shape[tdim]
    if embed_dim != embed_dim_to_check:
        raise AssertionError(
            f"was expecting embedding dimension of {embed_dim_to_check}, but got {embed_dim}"
        )
    if embed_dim % num_heads != 0:
        raise AssertionError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
    if use_separate_proj_weight:
        if tuple(key.shape[:2]) != tuple(value.shape[:2]):
            raise AssertionError(
                f"key's sequence and batch dims {tuple(key.shape[:2])} do not "
                f"match value's {tuple(value.shape[:2])}"
            )
    elif tuple(key.shape) != tuple(value.shape):
        raise AssertionError(
            f"key shape {tuple(key.shape)} does not match value shape {tuple(value.shape)}"
        )
    dt = query._data.dtype
    xp = get_array_module(query._data)
    if (
        key_padding_mask is not None
        and attn_mask is not None
        and key_padding_mask.dtype != attn_mask.dtype
    ):  # torch's deprecation (a bool padding mask beside a float causal mask, say)
        warnings.warn(
            "Support for mismatched key_padding_mask and attn_mask is deprecated. "
            "Use same type for both instead.",
            stacklevel=2,
        )
    kpm = _canonical_mask(key_padding_mask, "key_padding_mask", dt)
    if is_causal and attn_mask is None:
        raise RuntimeError(
            "Need attn_mask if specifying the is_causal hint. You may use the "
            "Transformer module method `generate_square_subsequent_mask` to "
            "create this mask."
        )
    if is_causal and kpm is None and not need_weights:
        mask = None  # the hint stands: SDPA's causal mask instead of attn_mask
    else:
        mask = _canonical_mask(attn_mask, "attn_mask", dt)
        is_causal = False
    if mask is not None:
        if mask.ndim == 2:
            if mask.shape != (tgt_len, src_len):
                raise RuntimeError(
                    f"The shape of the 2D attn_mask is {tuple(mask.shape)}, but "
                    f"should be {(tgt_len, src_len)}."
                )
        elif mask.shape != (bsz * num_heads, tgt_len, src_len):
            raise RuntimeError(
                f"The shape of the 3D attn_mask is {tuple(mask.shape)}, but should "
                f"be {(bsz * num_heads, tgt_len, src_len)}."
            )
        else:
            mask = mask.reshape(bsz, num_heads, tgt_len, src_len)
    arrays, layout = _project(
        query,
        key,
        value,
        in_proj_weight,
        in_proj_bias,
        use_separate_proj_weight,
        q_proj_weight,
        k_proj_weight,
        v_proj_weight,
        embed_dim,
    )
    if (bias_k is not None and bias_v is not None) or add_zero_attn:
        q, k, v = _split_tensors(arrays, layout, embed_dim)
        if bias_k is not None and bias_v is not None:
            shape = (bsz, 1, embed_dim) if batch_first else (1, bsz, embed_dim)
            k = ops.cat([k, ops.expand(ops.reshape(bias_k, (1, 1, embed_dim)), shape)], tdim)
            v = ops.cat([v, ops.expand(ops.reshape(bias_v, (1, 1, embed_dim)), shape)], tdim)
            mask, kpm = _pad_last(xp, mask), _pad_last(xp, kpm)
        if add_zero_attn:
            shape = list(k.shape)
            shape[tdim] = 1
            zeros = Tensor._wrap(xp.zeros(tuple(shape), dtype=dt))
            k, v = ops.cat([k, zeros], tdim), ops.cat([v, zeros], tdim)
            mask, kpm = _pad_last(xp, mask), _pad_last(xp, kpm)
        arrays, layout = (q, k, v), "q_k_v"
    if kpm is not None:
        if kpm.shape != (bsz, _key_len(arrays, layout, tdim)):
            raise AssertionError(
                f"expecting key_padding_mask shape of "
                f"{(bsz, _key_len(arrays, layout, tdim))}, but got "
                f"{tuple(kpm.shape)}"
            )
        kpm = kpm.reshape(bsz, 1, 1, kpm.shape[-1])
        mask = kpm if mask is None else mask + kpm
    if not training:
        dropout_p = 0.0
    head_dim = embed_dim // num_heads
    res = MultiHeadAttentionCore.apply(
        arrays[0],
        arrays[1],
        arrays[2],
        mask,
        float(dropout_p),
        num_heads,
        1.0 / math.sqrt(head_dim),
        bool(is_causal),
        bool(need_weights),
        not need_weights,
        None,
        batch_first,
        layout,
    )
    out, weights = res if need_weights else (res, None)
    if batch_first and training:  # torch's output is (L, B, E) in memory, seen as (B, L, E):
        # a dropout after it draws in that order (only training draws: eval skips the copy)
        out = ops.contiguous(ops.transpose(out, 0, 1))
        out = ops.transpose(linear(out, out_proj_weight, out_proj_bias), 0, 1)
    else:
        out = linear(out, out_proj_weight, out_proj_bias)
    if weights is not None and average_attn_weights:
        weights = ops.mean(weights, 1)
    if not is_batched:
        out = ops.squeeze(out, 1)
        if weights is not None:
            weights = ops.squeeze(weights, 0)
    return out, weights


def _key_len(arrays, layout, tdim):
    src = arrays[0] if layout == "qkv" else arrays[1]
    return src.shape[tdim]


def _split_tensors(arrays, layout, E):
    a, b, c = arrays
    if layout == "qkv":
        return a[..., :E], a[..., E : 2 * E], a[..., 2 * E :]
    if layout == "q_kv":
        return a, b[..., :E], b[..., E:]
    return a, b, c


def multi_head_attention_forward(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    embed_dim_to_check: int,
    num_heads: int,
    in_proj_weight: Tensor | None,
    in_proj_bias: Tensor | None,
    bias_k: Tensor | None,
    bias_v: Tensor | None,
    add_zero_attn: bool,
    dropout_p: float,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    training: bool = True,
    key_padding_mask: Tensor | None = None,
    need_weights: bool = True,
    attn_mask: Tensor | None = None,
    use_separate_proj_weight: bool = False,
    q_proj_weight: Tensor | None = None,
    k_proj_weight: Tensor | None = None,
    v_proj_weight: Tensor | None = None,
    static_k: Tensor | None = None,
    static_v: Tensor | None = None,
    average_attn_weights: bool = True,
    is_causal: bool = False,
) -> tuple[Tensor, Tensor | None]:
    r"""PyTorch's functional multi-head attention on (L, N, E) inputs (or unbatched (L, E)).

    Returns ``(attn_output, attn_weights)``; the weights (after dropout) are averaged over heads
    when ``average_attn_weights`` and are None unless ``need_weights``.
    """
    if static_k is not None or static_v is not None:
        raise NotImplementedError(
            "multi_head_attention_forward: static_k/static_v are not supported"
        )
    return _mha(
        query,
        key,
        value,
        embed_dim_to_check,
        num_heads,
        in_proj_weight,
        in_proj_bias,
        bias_k,
        bias_v,
        add_zero_attn,
        dropout_p,
        out_proj_weight,
        out_proj_bias,
        training,
        key_padding_mask,
        need_weights,
        attn_mask,
        use_separate_proj_weight,
        q_proj_weight,
        k_proj_weight,
        v_proj_weight,
        average_attn_weights,
        is_causal,
        batch_first=False,
    )
