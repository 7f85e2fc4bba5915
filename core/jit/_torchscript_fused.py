"""The fused inference kernels that TorchScript'ed ``nn.MultiheadAttention`` and
``nn.TransformerEncoderLayer`` call on their fast path (eval mode, no grad, batch-first):
``aten::_native_multi_head_attention`` and ``aten::_transformer_encoder_layer_fwd``, written
with ember's operators (the same math as the modules' regular path), and the recurrent
layers of traced RNN/LSTM/GRU (``aten::lstm``, ``aten::gru``, ``aten::rnn_tanh``/``_relu``)."""

from __future__ import annotations

import math

import ember
import ember.nn.functional as F
from ember.nn.modules.rnn import _layer
from ember.tensor import Tensor

__all__ = ["native_multi_head_attention", "rnn", "transformer_encoder_layer_fwd"]


def _additive(mask: Tensor, mask_type, batch: int, src_len: int, dtype) -> Tensor:
    """A bool (True: masked out) or float mask as an additive float mask broadcastable to
    ``(batch, heads, tgt_len, src_len)``; mask_type 1 is a ``(batch, src_len)`` padding mask."""
    if mask.dtype == ember.bool:
        mask = ember.zeros(mask.shape, dtype=dtype).masked_fill(mask, float("-inf"))
    if mask_type == 1 or (mask.dim() == 2 and mask.shape[0] == batch and mask_type != 0):
        mask = mask.view(batch, 1, 1, src_len)
    return mask


def native_multi_head_attention(
    query, key, value, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
    mask=None, need_weights=True, average_attn_weights=True, mask_type=None,
):  # fmt: skip
    batch, tgt_len, _ = query.shape
    src_len = key.shape[1]
    head_dim = embed_dim // num_heads
    if query is key and key is value:
        q, k, v = ember.chunk(F.linear(query, qkv_weight, qkv_bias), 3, -1)
    else:
        w_q, w_k, w_v = ember.chunk(qkv_weight, 3, 0)
        b_q, b_k, b_v = ember.chunk(qkv_bias, 3, 0) if qkv_bias is not None else (None,) * 3
        q, k, v = F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)

    def heads(t, n):
        return t.reshape(batch, n, num_heads, head_dim).transpose(1, 2)

    q, k, v = heads(q, tgt_len), heads(k, src_len), heads(v, src_len)
    scores = ember.matmul(q, k.transpose(-2, -1)) / math.sqrt(head_dim)
    if mask is not None:
        scores = scores + _additive(mask, mask_type, batch, src_len, scores.dtype)
    attn = F.softmax(scores, -1)
    out = ember.matmul(attn, v).transpose(1, 2).reshape(batch, tgt_len, embed_dim)
    out = F.linear(out, proj_weight, proj_bias)
    if not need_weights:
        return out, None
    return out, attn.mean(1) if average_attn_weights else attn


def transformer_encoder_layer_fwd(
    src, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias, use_gelu,
    norm_first, eps, norm_weight_1, norm_bias_1, norm_weight_2, norm_bias_2, ffn_weight_1,
    ffn_bias_1, ffn_weight_2, ffn_bias_2, mask=None, mask_type=None,
):  # fmt: skip
    def attention(x):
        return native_multi_head_attention(
            x, x, x, embed_dim, num_heads, qkv_weight, qkv_bias, proj_weight, proj_bias,
            mask, False, True, mask_type,
        )[0]  # fmt: skip

    def feed_forward(x):
        h = F.linear(x, ffn_weight_1, ffn_bias_1)
        h = F.gelu(h) if use_gelu else F.relu(h)
        return F.linear(h, ffn_weight_2, ffn_bias_2)

    def norm1(x):
        return F.layer_norm(x, [embed_dim], norm_weight_1, norm_bias_1, eps)

    def norm2(x):
        return F.layer_norm(x, [embed_dim], norm_weight_2, norm_bias_2, eps)

    x = src
    if norm_first:
        x = x + attention(norm1(x))
        return x + feed_forward(norm2(x))
    x = norm1(x + attention(x))
    return norm2(x + feed_forward(x))


def rnn(mode: str):
    """``aten::lstm/gru/rnn_tanh/rnn_relu(input, hx, params, has_biases, num_layers,
    dropout, train, bidirectional, batch_first)``: the fused layers of ember.nn.RNNBase."""

    def run(x, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        if isinstance(hx, Tensor):
            hx = [hx]
        h0, c0 = hx[0], hx[1] if len(hx) > 1 else None
        dirs = 2 if bidirectional else 1
        per = 4 if has_biases else 2
        # a projection (LSTM proj_size) adds one weight per layer and direction
        if len(params) == num_layers * dirs * (per + 1):
            per += 1
        if batch_first:
            x = ember.transpose(x, 0, 1)
        h_n, c_n = [], []
        for layer in range(num_layers):
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                p = list(params[k * per : (k + 1) * per])
                w_ih, w_hh = p[0], p[1]
                b_ih, b_hh = (p[2], p[3]) if has_biases else (None, None)
                w_hr = p[-1] if per in (3, 5) else None
                out, h, c = _layer(
                    mode, x, h0[k], None if c0 is None else c0[k],
                    (w_ih, w_hh, b_ih, b_hh, w_hr), None, d == 1,
                )  # fmt: skip
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            x = outs[0] if dirs == 1 else ember.cat(outs, -1)
            if dropout > 0 and train and layer < num_layers - 1:
                x = F.dropout(x, dropout, training=True)
        if batch_first:
            x = ember.transpose(x, 0, 1)
        if mode == "LSTM":
            return x, ember.stack(h_n, 0), ember.stack(c_n, 0)
        return x, ember.stack(h_n, 0)

    return run
