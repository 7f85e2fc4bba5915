"""Modules converted whole (leaves of the ONNX trace) and shape-check-free forwards for the
container modules whose own ``forward`` branches on shapes."""

from __future__ import annotations

import math
import re

import numpy as np

from . import OnnxExporterError
from ._context import Sym, _np_of
from ._ops_attention import attention_core
from ._ops_basic import _c, rank
from ._ops_nn import (
    _const_np,
    adaptive_pool,
    avg_pool,
    batch_norm,
    conv,
    conv_transpose,
    instance_norm,
    linear,
    lp_pool,
    max_pool,
    pad,
)
from ._ops_rnn import rnn_module
from ._registry import MODULES, find_module, module


def leaf_handler(m):
    return find_module(m)


def _nd(m) -> int:
    hit = re.search(r"(\d)d$", type(m).__name__)
    return int(hit.group(1)) if hit else 2


def _classes(*names: str) -> tuple:
    import ember.nn as nn
    import ember.nn.modules.pooling as pm

    out = []
    for n in names:
        c = getattr(nn, n, None) or getattr(pm, n, None)
        if c is not None:
            out.append(c)
    return tuple(out)


def _register() -> None:
    import ember.nn as nn

    conv_cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    module(*conv_cls)(_conv_module)
    module(nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)(_conv_t_module)
    module(nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)(_maxpool_module)
    module(nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)(_avgpool_module)
    module(*_classes("LPPool1d", "LPPool2d", "LPPool3d"))(_lppool_module)
    module(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)(_aap_module)
    module(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)(_amp_module)
    module(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)(_bn_module)
    module(nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)(_in_module)
    module(nn.RNN, nn.LSTM, nn.GRU)(rnn_module)
    module(nn.RNNCell, nn.LSTMCell, nn.GRUCell)(_cell_module)
    module(nn.MultiheadAttention)(_mha_module)
    module(nn.Softmax2d)(_softmax2d_module)


def _softmax2d_module(ctx, m, x):
    return ctx.op("Softmax", [x], axis=-3)


# ---- conv / pool / norm ------------------------------------------------------------------
def _conv_module(ctx, m, x):
    nd = _nd(m)
    padding = m.padding
    if m.padding_mode != "zeros":
        mode = {"reflect": "reflect", "replicate": "replicate", "circular": "circular"}[
            m.padding_mode
        ]
        x = Sym(pad(ctx, x, list(m._reversed_padding_repeated_twice), mode), x.ex, x.dyn)
        padding = 0
    return conv(ctx, x, m.weight, m.bias, m.stride, padding, m.dilation, m.groups, nd)


def _conv_t_module(ctx, m, x, output_size=None):
    if output_size is not None:
        raise OnnxExporterError("ConvTranspose with output_size is not converted")
    return conv_transpose(
        ctx,
        x,
        m.weight,
        m.bias,
        m.stride,
        m.padding,
        m.output_padding,
        m.groups,
        m.dilation,
        _nd(m),
    )


def _maxpool_module(ctx, m, x):
    return max_pool(
        ctx,
        x,
        m.kernel_size,
        m.stride,
        m.padding,
        m.dilation,
        m.ceil_mode,
        m.return_indices,
        _nd(m),
    )


def _avgpool_module(ctx, m, x):
    return avg_pool(
        ctx,
        x,
        m.kernel_size,
        m.stride,
        m.padding,
        m.ceil_mode,
        m.count_include_pad,
        getattr(m, "divisor_override", None),
        _nd(m),
    )


def _lppool_module(ctx, m, x):
    return lp_pool(ctx, x, m.norm_type, m.kernel_size, m.stride, m.ceil_mode, _nd(m))


def _aap_module(ctx, m, x):
    return adaptive_pool(ctx, x, m.output_size, _nd(m), "avg")


def _amp_module(ctx, m, x):
    if m.return_indices:
        raise OnnxExporterError("AdaptiveMaxPool with return_indices=True is not converted")
    return adaptive_pool(ctx, x, m.output_size, _nd(m), "max")


def _bn_module(ctx, m, x):
    training = m.training or (m.running_mean is None and m.running_var is None)
    return batch_norm(
        ctx, x, m.running_mean, m.running_var, m.weight, m.bias, training, m.momentum, m.eps
    )


def _in_module(ctx, m, x):
    unb = rank(x) == _nd(m) + 1
    xin = Sym(ctx.unsqueeze(x, [0]), x.ex[None], x.dyn) if unb else x
    y = instance_norm(
        ctx,
        xin,
        m.running_mean,
        m.running_var,
        m.weight,
        m.bias,
        m.training or not m.track_running_stats,
        m.momentum,
        m.eps,
    )
    return ctx.squeeze(y, [0]) if unb else y


# ---- recurrent layers: see _ops_rnn.py (packed sequences, proj_size) ------------------
def _cell_module(ctx, m, x, hx=None):
    import ember.nn as nn

    H = m.hidden_size
    dt = x.np_dtype
    unb = rank(x) == 1
    xin = ctx.unsqueeze(x, [0]) if unb else x.name
    if isinstance(m, nn.LSTMCell):
        h, c = hx if hx is not None else (None, None)
    else:
        h, c = hx, None

    def state(s):
        if s is None:
            return ctx.op(
                "Expand",
                [
                    ctx.const(np.zeros((1, H), dt)),
                    ctx.op("Concat", [ctx.dim(xin, 0), ctx.ints([H])], axis=0),
                ],
            )
        return ctx.unsqueeze(s, [0]) if unb else ctx.name_of(s)

    h, c = state(h), (state(c) if isinstance(m, nn.LSTMCell) else None)

    def lin(inp, w, b):
        out = ctx.op("MatMul", [inp, ctx.const(_np_of(w).T)])
        return ctx.op("Add", [out, b]) if b is not None else out

    gi = lin(xin, m.weight_ih, m.bias_ih if m.bias else None)
    gh = lin(h, m.weight_hh, m.bias_hh if m.bias else None)
    if isinstance(m, nn.LSTMCell):
        i, f, g, o = ctx.op("Split", [ctx.op("Add", [gi, gh]), ctx.ints([H] * 4)], n_out=4, axis=1)
        c2 = ctx.op(
            "Add",
            [
                ctx.op("Mul", [ctx.op("Sigmoid", [f]), c]),
                ctx.op("Mul", [ctx.op("Sigmoid", [i]), ctx.op("Tanh", [g])]),
            ],
        )
        h2 = ctx.op("Mul", [ctx.op("Sigmoid", [o]), ctx.op("Tanh", [c2])])
        return (ctx.squeeze(h2, [0]), ctx.squeeze(c2, [0])) if unb else (h2, c2)
    if isinstance(m, nn.GRUCell):
        ir, iz, in_ = ctx.op("Split", [gi, ctx.ints([H] * 3)], n_out=3, axis=1)
        hr, hz, hn = ctx.op("Split", [gh, ctx.ints([H] * 3)], n_out=3, axis=1)
        r = ctx.op("Sigmoid", [ctx.op("Add", [ir, hr])])
        z = ctx.op("Sigmoid", [ctx.op("Add", [iz, hz])])
        n = ctx.op("Tanh", [ctx.op("Add", [in_, ctx.op("Mul", [r, hn])])])
        # h' = (1 - z) * n + z * h = n + z * (h - n)
        h2 = ctx.op("Add", [n, ctx.op("Mul", [z, ctx.op("Sub", [h, n])])])
    else:
        act = "Relu" if m.nonlinearity == "relu" else "Tanh"
        h2 = ctx.op(act, [ctx.op("Add", [gi, gh])])
    return ctx.squeeze(h2, [0]) if unb else h2


# ---- attention ---------------------------------------------------------------------------
def _mha_module(
    ctx,
    m,
    query,
    key,
    value,
    key_padding_mask=None,
    need_weights=True,
    attn_mask=None,
    average_attn_weights=True,
    is_causal=False,
):
    if m.bias_k is not None or m.add_zero_attn:
        raise OnnxExporterError(
            "MultiheadAttention with add_bias_kv/add_zero_attn is not converted"
        )
    E, Hn = m.embed_dim, m.num_heads
    hd = E // Hn
    unb = rank(query) == 2

    def prep(t):
        if unb:
            return ctx.unsqueeze(t, [0])  # (L, E) -> (1, L, E)
        if not m.batch_first:
            return ctx.op("Transpose", [t], perm=[1, 0, 2])  # (L, B, E) -> (B, L, E)
        return ctx.name_of(t)

    q, k, v = prep(query), prep(key), prep(value)
    if m._qkv_same_embed_dim:
        w = _np_of(m.in_proj_weight)
        ws = [w[:E], w[E : 2 * E], w[2 * E :]]
    else:
        ws = [_np_of(m.q_proj_weight), _np_of(m.k_proj_weight), _np_of(m.v_proj_weight)]
    b = _const_np(m.in_proj_bias)
    bs = [b[:E], b[E : 2 * E], b[2 * E :]] if b is not None else [None] * 3

    def proj_heads(t, w, bias):
        y = ctx.op("MatMul", [t, ctx.const(w.T)])
        if bias is not None:
            y = ctx.op("Add", [y, ctx.const(bias)])
        y = ctx.op("Reshape", [y, ctx.ints([0, 0, Hn, hd])])
        return ctx.op("Transpose", [y], perm=[0, 2, 1, 3])  # (B, H, L, hd)

    qh, kh, vh = (proj_heads(t, w, bb) for t, w, bb in zip((q, k, v), ws, bs))
    qs, ks = _heads_sym(qh, query, m.batch_first, unb), _heads_sym(kh, key, m.batch_first, unb)
    mask = None
    if attn_mask is not None:  # MHA's bool masks mark what is NOT attended: invert them
        am = ctx.name_of(attn_mask)
        if rank(attn_mask) == 3:  # (B*H, L, S) -> (B, H, L, S)
            shp = ctx.op("Concat", [ctx.ints([-1, Hn]), ctx.shape_of(am, 1)], axis=0)
            am = ctx.op("Reshape", [am, shp])
        mask = _as_keep(ctx, am, _is_bool(attn_mask))
    if key_padding_mask is not None:  # (B, S) -> (B, 1, 1, S)
        kp = ctx.name_of(key_padding_mask)
        kp = ctx.unsqueeze(kp, [0, 1, 2] if unb else [1, 2])
        kp = _as_keep(ctx, kp, _is_bool(key_padding_mask))
        mask = kp if mask is None else _merge(ctx, mask, kp, qs)
    causal = is_causal and attn_mask is None
    out, w = attention_core(ctx, qh, kh, vh, mask, causal, 1.0 / math.sqrt(hd), qs, ks)
    y = ctx.op("Reshape", [ctx.op("Transpose", [out], perm=[0, 2, 1, 3]), ctx.ints([0, 0, E])])
    y = linear(ctx, Sym(y, np.zeros((1, 1, E), np.float32)), m.out_proj.weight, m.out_proj.bias)
    if unb:
        y = ctx.squeeze(y, [0])
    elif not m.batch_first:
        y = ctx.op("Transpose", [y], perm=[1, 0, 2])
    weights = None
    if need_weights:
        weights = ctx.reduce("ReduceMean", w, [1], False) if average_attn_weights else w
        if unb:
            weights = ctx.squeeze(weights, [0])
    return (y, weights)


def _is_bool(v) -> bool:
    return _np_of(v.ex if isinstance(v, Sym) else v).dtype == np.bool_


def _as_keep(ctx, name: str, is_bool: bool) -> Sym:
    """A mask in attention_core's convention: bool True = attend, or an additive float."""
    if is_bool:
        return Sym(ctx.op("Not", [name]), np.zeros((1,), np.bool_))
    return Sym(name, np.zeros((1,), np.float32))


def _merge(ctx, a: Sym, b: Sym, like) -> Sym:
    if _is_bool(a) and _is_bool(b):
        return Sym(ctx.op("And", [a, b]), np.zeros((1,), np.bool_))

    def additive(mv: Sym) -> str:
        if _is_bool(mv):
            return ctx.op("Where", [mv, _c(ctx, 0.0, like), _c(ctx, -np.inf, like)])
        return mv.name

    return Sym(ctx.op("Add", [additive(a), additive(b)]), np.zeros((1,), np.float32))


def _heads_sym(heads: str, t, batch_first: bool, unb: bool) -> Sym:
    """A Sym for the (B, H, L, hd) heads tensor, carrying t's sequence length and dynamism."""
    ex = _np_of(t.ex if isinstance(t, Sym) else t)
    seq_axis = 0 if unb or not batch_first else 1
    dyn = isinstance(t, Sym) and isinstance(t.dyn, frozenset) and seq_axis in t.dyn
    return Sym(
        heads,
        np.zeros((1, 1, ex.shape[seq_axis], 1), np.float32),
        frozenset({2}) if dyn else frozenset(),
    )


# ---- transformer containers: forwards without shape checks -------------------------------
def _encoder_forward(m, src, mask=None, src_key_padding_mask=None, is_causal=None):
    out = src
    for mod in m.layers:
        out = mod(
            out, src_mask=mask, is_causal=bool(is_causal), src_key_padding_mask=src_key_padding_mask
        )
    return m.norm(out) if m.norm is not None else out


def _decoder_forward(
    m,
    tgt,
    memory,
    tgt_mask=None,
    memory_mask=None,
    tgt_key_padding_mask=None,
    memory_key_padding_mask=None,
    tgt_is_causal=None,
    memory_is_causal=False,
):
    out = tgt
    for mod in m.layers:
        out = mod(
            out,
            memory,
            tgt_mask=tgt_mask,
            memory_mask=memory_mask,
            tgt_key_padding_mask=tgt_key_padding_mask,
            memory_key_padding_mask=memory_key_padding_mask,
            tgt_is_causal=bool(tgt_is_causal),
            memory_is_causal=memory_is_causal,
        )
    return m.norm(out) if m.norm is not None else out


def _transformer_forward(
    m,
    src,
    tgt,
    src_mask=None,
    tgt_mask=None,
    memory_mask=None,
    src_key_padding_mask=None,
    tgt_key_padding_mask=None,
    memory_key_padding_mask=None,
    src_is_causal=None,
    tgt_is_causal=None,
    memory_is_causal=False,
):
    memory = m.encoder(
        src, mask=src_mask, src_key_padding_mask=src_key_padding_mask, is_causal=src_is_causal
    )
    return m.decoder(
        tgt,
        memory,
        tgt_mask=tgt_mask,
        memory_mask=memory_mask,
        tgt_key_padding_mask=tgt_key_padding_mask,
        memory_key_padding_mask=memory_key_padding_mask,
        tgt_is_causal=tgt_is_causal,
        memory_is_causal=memory_is_causal,
    )


def traceable_forward(m):
    import ember.nn as nn

    for cls, f in (
        (nn.TransformerEncoder, _encoder_forward),
        (nn.TransformerDecoder, _decoder_forward),
        (nn.Transformer, _transformer_forward),
    ):
        if type(m).forward is cls.forward and isinstance(m, cls):
            return f
    return None


_register()
__all__ = ["leaf_handler", "traceable_forward", "MODULES"]
