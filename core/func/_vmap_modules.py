"""Batching rules for the nn modules built on fused Functions: ``nn.LSTM``/``GRU``/``RNN`` (the
``LSTMLayer``/``GRULayer``/``RNNLayer`` Functions of ``ops/rnn.py``) and
``nn.MultiheadAttention``/``nn.Transformer*`` (the ``_mha`` function).

These modules reach their building blocks by name inside ember (``ops.transpose``,
``from ..functional._attention import _mha``), not through the public namespaces, so besides the
rules this file names the extra places to patch while a vmap runs (:func:`extra_targets`).

The rules *fold* the vmap dims into the op's own batch dim (a sample's ``B`` becomes
``V * B``): one call of the fused kernel for every sample, exactly as eager computes each.
A batched weight (model ensembling over ``stack_module_state``) cannot fold; the RNN rules then
run the recurrence with batched public ops (one step at a time over the sequence, never a loop
over the samples).
"""

from __future__ import annotations

import importlib
import math
import sys
import types
from collections.abc import Callable

from ..tensor import Tensor
from ._vmap_dispatch import RULES
from ._vmap_tensor import align, is_batched, level_size, levels_of, merge_levels, unwrapped, wrap

__all__ = ["extra_targets", "install"]


def _size(levels: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(level_size(lv) for lv in levels)


def _fold(t: Tensor | None, have: tuple[int, ...], target: tuple[int, ...], dim: int):
    """Physical ``t`` (batched over ``have``) with the ``target`` levels expanded and merged
    into its logical dim ``dim``: ``(V..., *pre, B, *post) -> (*pre, V*B, *post)``."""
    if t is None:
        return None
    k = len(target)
    t = align(t, have, target, expand=True)
    if dim:
        t = t.movedim(tuple(range(k)), tuple(range(dim, dim + k)))
    shape = tuple(t.shape)
    return t.reshape(shape[:dim] + (-1,) + shape[dim + k + 1 :])


def _unfold(t: Tensor | None, target: tuple[int, ...], dim: int):
    """Inverse of :func:`_fold` on a result: ``(*pre, V*B, *post) -> (V..., *pre, B, *post)``."""
    if t is None:
        return None
    k = len(target)
    shape = tuple(t.shape)
    t = t.reshape(shape[:dim] + _size(target) + (-1,) + shape[dim + 1 :])
    if dim:
        t = t.movedim(tuple(range(dim, dim + k)), tuple(range(k)))
    return wrap(t, target)


# ---- recurrent layers --------------------------------------------------------------------
# name -> (positions of the state tensors, position of the first weight, number of weights)
_RNN_LAYOUT = {"LSTMLayer": ((1, 2), 3, 5), "GRULayer": ((1,), 2, 4), "RNNLayer": ((1,), 2, 4)}


def _rnn_rule(name: str) -> Callable:
    states, w0, nw = _RNN_LAYOUT[name]

    def rule(orig, args, kwargs):
        args = list(args)
        weights = args[w0 : w0 + nw]
        batch_sizes = args[w0 + nw]
        if batch_sizes is not None:
            raise RuntimeError(
                f"vmap: {name} over a PackedSequence is not supported (the "
                "packing would differ per sample); pad the sequences instead"
            )
        if any(is_batched(w) for w in weights):
            return _rnn_unfused(name, args)
        x = args[0]
        target = merge_levels(*(levels_of(args[i]) for i in (0,) + states))
        with unwrapped(args) as lv:
            args[0] = _fold(x, lv.get(id(x), ()), target, 1)  # (T, B, I)
            for i in states:
                s = args[i]
                args[i] = None if s is None else _fold(s, lv.get(id(s), ()), target, 0)
            outs = orig(*args, **kwargs)
        return (_unfold(outs[0], target, 1),) + tuple(_unfold(o, target, 0) for o in outs[1:])

    return rule


def _rnn_unfused(name: str, args: list):
    """A recurrent layer with batched weights, step by step with batched public ops."""
    import ember

    if name == "LSTMLayer":
        x, h, c, w_ih, w_hh, b_ih, b_hh, w_hr, _, reverse = args
    else:
        x, h, w_ih, w_hh, b_ih, b_hh, _, reverse = args[:8]
        c = w_hr = None
    T, B = x.shape[0], x.shape[1]
    P = w_hh.shape[1]
    if h is None:
        h = ember.zeros(B, P, dtype=x.dtype, device=x.device)
    if name == "LSTMLayer" and c is None:
        c = ember.zeros(B, w_hh.shape[0] // 4, dtype=x.dtype, device=x.device)
    pre = ember.matmul(x, w_ih.transpose(0, 1))
    if b_ih is not None:
        pre = pre + b_ih
    outs = [None] * T
    for t in range(T - 1, -1, -1) if reverse else range(T):
        rec = ember.matmul(h, w_hh.transpose(0, 1))
        if b_hh is not None:
            rec = rec + b_hh
        if name == "LSTMLayer":
            i, f, g, o = (pre[t] + rec).chunk(4, -1)
            c = ember.sigmoid(f) * c + ember.sigmoid(i) * ember.tanh(g)
            h = ember.sigmoid(o) * ember.tanh(c)
            if w_hr is not None:
                h = ember.matmul(h, w_hr.transpose(0, 1))
        elif name == "GRULayer":
            ri, zi, ni = pre[t].chunk(3, -1)
            rh, zh, nh = rec.chunk(3, -1)
            r, z = ember.sigmoid(ri + rh), ember.sigmoid(zi + zh)
            n = ember.tanh(ni + r * nh)
            h = (1 - z) * n + z * h
        else:
            v = pre[t] + rec
            h = ember.relu(v) if args[8] else ember.tanh(v)
        outs[t] = h
    out = ember.stack(outs, 0)
    return (out, h, c) if name == "LSTMLayer" else (out, h)


# ---- multi-head attention ----------------------------------------------------------------
_MHA_ARGS = (
    "query",
    "key",
    "value",
    "embed_dim_to_check",
    "num_heads",
    "in_proj_weight",
    "in_proj_bias",
    "bias_k",
    "bias_v",
    "add_zero_attn",
    "dropout_p",
    "out_proj_weight",
    "out_proj_bias",
    "training",
    "key_padding_mask",
    "need_weights",
    "attn_mask",
    "use_separate_proj_weight",
    "q_proj_weight",
    "k_proj_weight",
    "v_proj_weight",
    "average_attn_weights",
    "is_causal",
    "batch_first",
)
_MHA_DATA = ("query", "key", "value", "key_padding_mask", "attn_mask")


def mha_rule(orig, args, kwargs):
    a = dict(zip(_MHA_ARGS, args))
    a.update(kwargs)
    params = [v for k, v in a.items() if k not in _MHA_DATA and isinstance(v, Tensor)]
    if any(is_batched(p) for p in params):
        return _mha_unfused(a)
    q = a["query"]
    target = merge_levels(*(levels_of(a[k]) for k in _MHA_DATA))
    unbatched = q.dim() == 2
    bf = bool(a["batch_first"])
    heads = a["num_heads"]
    mask = a["attn_mask"]
    mask_nd = None if mask is None else mask.dim()
    with unwrapped(list(a.values())) as lv:
        # every sample becomes batch_first (B, L, E); the vmap dims join B
        for k in ("query", "key", "value"):
            t = a[k]
            if unbatched:
                a[k] = _fold(t.unsqueeze(len(lv.get(id(t), ()))), lv.get(id(t), ()), target, 0)
            else:
                a[k] = _fold(t if bf else t.transpose(-3, -2), lv.get(id(t), ()), target, 0)
        kpm = a["key_padding_mask"]
        if kpm is not None:
            have = lv.get(id(kpm), ())
            a["key_padding_mask"] = _fold(
                kpm.unsqueeze(len(have)) if unbatched else kpm, have, target, 0
            )
        if mask is not None and (id(mask) in lv or mask_nd == 3):
            have = lv.get(id(mask), ())
            k = len(have)
            if mask_nd == 2:  # (L, S), the same for every head: make it (B * heads, L, S)
                b = 1 if unbatched else a["query"].shape[0] // math.prod(_size(target))
                m = mask.reshape(mask.shape[:k] + (1, 1) + tuple(mask.shape[k:]))
                mask = m.expand(tuple(mask.shape[:k]) + (b, heads) + tuple(mask.shape[k:]))
                mask = mask.reshape(tuple(mask.shape[:k]) + (-1,) + tuple(mask.shape[-2:]))
            a["attn_mask"] = _fold(mask, have, target, 0)
        a["batch_first"] = True
        out, weights = orig(**a)
    n = 1 if unbatched else None
    out = _unfold(out, target, 0)
    weights = _unfold(weights, target, 0)
    if n:  # drop the batch dim that stood in for the sample's missing one
        with unwrapped(out, weights):
            k = len(target)
            out = out.squeeze(k)
            weights = None if weights is None else weights.squeeze(k)
        wrap(out, target)
        if weights is not None:
            wrap(weights, target)
    elif not bf:
        with unwrapped(out):
            out = out.transpose(-3, -2)
        wrap(out, target)
    return out, weights


def _mha_unfused(a: dict):
    """Multi-head attention with batched parameters (ensembling), with batched public ops."""
    import ember
    from ember.nn import functional as F

    if a["bias_k"] is not None or a["add_zero_attn"] or a["key_padding_mask"] is not None:
        raise RuntimeError(
            "vmap: MultiheadAttention with batched parameters supports neither "
            "bias_k/bias_v, add_zero_attn nor key_padding_mask"
        )
    q, k, v = a["query"], a["key"], a["value"]
    unbatched = q.dim() == 2
    if unbatched:
        q, k, v = q.unsqueeze(0), k.unsqueeze(0), v.unsqueeze(0)
    elif not a["batch_first"]:
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)
    E, H = q.shape[-1], a["num_heads"]
    if a["use_separate_proj_weight"]:
        ws = (a["q_proj_weight"], a["k_proj_weight"], a["v_proj_weight"])
    else:
        ws = a["in_proj_weight"].chunk(3, 0)
    bs = (None,) * 3 if a["in_proj_bias"] is None else a["in_proj_bias"].chunk(3, 0)
    q, k, v = (F.linear(t, w, b) for t, w, b in zip((q, k, v), ws, bs))
    B, L, S = q.shape[0], q.shape[1], k.shape[1]
    q, k, v = (t.reshape(B, t.shape[1], H, E // H).transpose(1, 2) for t in (q, k, v))
    s = ember.matmul(q, k.transpose(-2, -1)) / math.sqrt(E // H)
    mask = a["attn_mask"]
    if a["is_causal"] and mask is None:
        mask = ember.ones(L, S, dtype=ember.bool, device=q.device).triu(1)
    if mask is not None:
        if mask.dim() == 3:
            mask = mask.reshape(B, H, L, S)
        s = s.masked_fill(mask, float("-inf")) if mask.dtype == ember.bool else s + mask
    p = ember.softmax(s, -1)
    if a["training"] and a["dropout_p"]:
        p = F.dropout(p, a["dropout_p"])
    out = ember.matmul(p, v).transpose(1, 2).reshape(B, L, E)
    out = F.linear(out, a["out_proj_weight"], a["out_proj_bias"])
    weights = None
    if a["need_weights"]:
        weights = p.mean(1) if a["average_attn_weights"] else p
    if unbatched:
        return out.squeeze(0), None if weights is None else weights.squeeze(0)
    return (out if a["batch_first"] else out.transpose(0, 1)), weights


# ---- where the modules reach these --------------------------------------------------------
_FUSED = {"LSTMLayer": "ember.ops.rnn", "GRULayer": "ember.ops.rnn", "RNNLayer": "ember.ops.rnn"}
_PRIVATE = {"_mha": ("ember.nn.functional._attention", "nn._mha")}


def extra_targets(targets: list[tuple]) -> list[tuple]:
    """``(owner, attribute, rule key, original)`` entries to patch besides the public
    namespaces: the fused Functions' ``apply``, private helpers, and every function that ember's
    ops and nn modules imported by name from a patched namespace (``ops.transpose``)."""
    out = []
    for cname, modname in _FUSED.items():
        cls = getattr(importlib.import_module(modname), cname)
        out.append((cls, "apply", cname, cls.apply))
    private = {}
    for fname, (modname, key) in _PRIVATE.items():
        fn = getattr(importlib.import_module(modname), fname)
        private[id(fn)] = key
    ids = {}
    for _, _, key, fn in targets:  # the public functions, and what autocast wrapped
        ids.setdefault(id(fn), key)
        # what the public name wraps: autocast's ``__wrapped__``, the ``out=`` wrapper's
        # ``_ember_out_wrapped`` (core/_out_arg.py), possibly one inside the other
        inner = fn
        while True:
            inner = getattr(inner, "_ember_out_wrapped", None) or getattr(
                inner, "__wrapped__", None
            )
            if inner is None:
                break
            ids.setdefault(id(inner), key)
    ids.update(private)
    for modname in sorted(sys.modules):
        # the ops package (``ops.transpose``) and nn's modules; not the ops' own definition
        # modules, whose internal calls see physical tensors only
        if not (modname == "ember.ops" or modname.startswith("ember.nn.")):
            continue
        mod = sys.modules[modname]
        if not isinstance(mod, types.ModuleType) or modname in ("ember.nn.functional",):
            continue
        for name, fn in list(vars(mod).items()):
            if isinstance(fn, types.FunctionType):
                key = ids.get(id(fn))
                if key is not None and (not name.startswith("_") or id(fn) in private):
                    out.append((mod, name, key, fn))
    return out


def install() -> None:
    for name in _RNN_LAYOUT:
        RULES[name] = _rnn_rule(name)
    RULES["nn._mha"] = mha_rule
