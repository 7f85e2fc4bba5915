"""Raw-array pieces of the fused attention: masks to additive biases, the numerically safe
softmax, batched matmul, the forward/backward of one attention (``_attend``,
``_attend_backward``) and the in-graph gradient used for double backward. Array in, array
out (``xp`` is numpy or cupy); ``attention`` builds its Functions from them and re-exports
every name.
"""

from __future__ import annotations

import numpy as np

from ..backend.device import get_array_module
from ..backend.mkl_gemm import matmul as mm
from ..tensor import Tensor
from . import attention_kernels
from .attention_chunks import _attend_backward_chunked, _attend_chunked, _chunks
from .dropout_draw import dropout_draw


def _masked_to_bias(xp, masked, dtype):
    """A bool array (True = masked) as an additive bias: -inf where masked, else 0."""
    bias = xp.zeros(masked.shape, dtype=dtype)
    bias[masked] = -xp.inf
    return bias


def _bias(xp, mask, is_causal, L, S, dtype):
    """The additive mask (0 / -inf, or the float mask itself) or None."""
    bias = None
    if mask is not None:
        if mask.dtype == bool:
            bias = _masked_to_bias(xp, ~mask, dtype)
        else:
            bias = mask.astype(dtype, copy=False)
    if is_causal:
        causal = _masked_to_bias(xp, ~xp.tri(L, S, dtype=bool), dtype)
        bias = causal if bias is None else bias + causal
    return bias


def _softmax_(xp, s, masked: bool, safe: bool, split: bool = True):
    """Row softmax in place; ``safe`` gives all-masked rows zero weight (else NaN, like torch).
    The compiled kernel runs where it applies (``attention_kernels``; ``split=False`` keeps it
    on this thread)."""
    if attention_kernels.softmax_(xp, s, masked, safe, split):
        return s
    m = s.max(-1, keepdims=True)
    if masked:
        m[xp.isinf(m)] = 0  # rows with every score -inf: exp gives 0, handled below
    s -= m
    xp.exp(s, out=s)
    den = s.sum(-1, keepdims=True)
    if masked:
        den[den == 0] = 1 if safe else xp.nan
    s *= 1 / den
    return s


def _matmul(xp, a, b, out=None):
    """``a @ b``, written into ``out`` (possibly a strided view) when given."""
    if out is None:
        return mm(a, b)
    if xp is np:
        return mm(a, b, out=out)
    out[...] = a @ b  # CuPy: no guarantee that matmul writes into a strided ``out``
    return out


def _attend(xp, qh, kh, vh, scale, bias, safe, dropout_p, generator, out=None, causal=False):
    """Forward on head arrays (..., L, d): returns (qs, p, pd, o); ``o`` may go into ``out``.
    Large NumPy batches run in chunks of the leading axis (``attention_chunks``). ``causal``
    (only where ``attention_kernels.available``; ``bias`` is then None): the compiled
    kernel's causal softmax stands in for the causal bias."""
    ranges = None if bias is not None and bias.ndim > qh.ndim else _chunks(xp, qh, kh, vh)
    if ranges is not None:
        return _attend_chunked(
            qh, kh, vh, scale, bias, safe, dropout_p, generator, out, ranges, causal
        )
    return _attend_whole(xp, qh, kh, vh, scale, bias, safe, dropout_p, generator, out, causal)


def _scores_softmax_(xp, s, bias, safe, causal, split=True):
    """The weights from the scores ``s`` in place: bias added (or the causal mask applied by
    the compiled kernel), then the row softmax."""
    if causal and attention_kernels.causal_softmax_(s, 0, split):
        return s
    if causal:  # (empty scores; or the kernels went away since the caller asked)
        bias = _bias(xp, None, True, s.shape[-2], s.shape[-1], s.dtype)
    if bias is not None:
        s += bias
    return _softmax_(xp, s, bias is not None, safe, split)


def _attend_whole(xp, qh, kh, vh, scale, bias, safe, dropout_p, generator, out=None, causal=False):
    """``_attend`` in one piece."""
    qs = qh * qh.dtype.type(scale)
    s = mm(qs, xp.swapaxes(kh, -1, -2))
    p = _scores_softmax_(xp, s, bias, safe, causal)
    pd = p
    if dropout_p > 0:
        if dropout_p >= 1:
            pd = xp.zeros_like(p)
        else:
            keep = dropout_draw(generator, xp, p.shape, p.dtype, dropout_p) >= dropout_p
            pd = p * keep
            pd *= p.dtype.type(1 / (1 - dropout_p))
    o = _matmul(xp, pd, vh, out)
    return qs, p, pd, o


def _attend_backward(xp, g_o, g_pd, qs, kh, vh, p, pd, scale, need, outs=(None, None, None)):
    """Gradients of q, k, v (written into ``outs`` where given) and of the scores (in chunks,
    like ``_attend``, the scores' gradient is None unless ``need[3]`` asks for it)."""
    ranges = _chunks(xp, qs, kh, vh, g_o, p)
    if ranges is not None:
        return _attend_backward_chunked(g_o, g_pd, qs, kh, vh, p, pd, scale, need, outs, ranges)
    return _attend_backward_whole(xp, g_o, g_pd, qs, kh, vh, p, pd, scale, need, outs)


def _attend_backward_whole(
    xp, g_o, g_pd, qs, kh, vh, p, pd, scale, need, outs=(None,) * 3, split=True
):
    """``_attend_backward`` in one piece (``split``: see ``_softmax_``)."""
    dq = dk = dv = None
    fresh = False  # whether g_pd is this function's own temporary (then ds overwrites it)
    if g_o is not None:
        gp = mm(g_o, xp.swapaxes(vh, -1, -2))
        g_pd = gp if g_pd is None else g_pd + gp
        fresh = True
        if need[2]:
            dv = _matmul(xp, xp.swapaxes(pd, -1, -2), g_o, outs[2])
    if dv is None and need[2] and outs[2] is not None:
        outs[2][...] = 0
    # d softmax: with t = dL/dpd * pd, ds = t - p * rowsum(t) (dropout folded into pd)
    ds = attention_kernels.softmax_grad(xp, g_pd, p, pd, fresh, split)
    if ds is None:
        ds = g_pd * pd
        ds -= p * ds.sum(-1, keepdims=True)
    if need[0]:
        dq = _matmul(xp, ds, kh, outs[0])
        dq *= kh.dtype.type(scale)
    if need[1]:
        dk = _matmul(xp, xp.swapaxes(ds, -1, -2), qs, outs[1])
    return dq, dk, dv, ds


def _dead_rows(xp, bias):
    """Rows whose every score is masked (-inf): the safe softmax gives them zero weight."""
    if bias is None:
        return None
    dead = xp.isneginf(bias).all(-1, keepdims=True)
    return dead if bool(dead.any()) else None


# grouped-query attention: sum the gradients of each repeated key/value head
def _sum_repeats(g, rep):
    shape = g.shape
    return g.reshape(shape[:-3] + (shape[-3] // rep, rep) + shape[-2:]).sum(-3)


def _attend_grads_in_graph(q, k, v, mask, g_out, g_w, scale, const_bias, safe, p, pd, rep):
    """The first-order gradients of q, k, v (and of a float mask given as a tensor) as
    differentiable tensor ops, for double backward: the scores and weights are recomputed
    from q and k in the graph, and dropout reuses the forward's mask (read off ``p``/``pd``).
    ``const_bias`` holds the constant part of the mask (bool / float array, causal)."""
    import ember

    def repeat(t):  # each key/value head ``rep`` times (grouped-query attention)
        if rep == 1:
            return t
        shape = tuple(t.shape)
        wide = shape[:-2] + (rep,) + shape[-2:]
        return (
            t.unsqueeze(-3).expand(*wide).reshape(*(shape[:-3] + (shape[-3] * rep,) + shape[-2:]))
        )

    kr, vr = repeat(k), repeat(v)
    qs = q * scale
    s = qs @ kr.mT
    if const_bias is not None:
        s = s + Tensor._wrap(const_bias)
    if mask is not None:
        s = s + mask
    xp = get_array_module(p)
    dead = None
    if safe:
        total = const_bias
        if mask is not None:
            total = mask._data if total is None else total + mask._data
        dead = _dead_rows(xp, total)
    if dead is not None:  # keep such rows finite in the graph; their weights are zero
        s = ember.where(Tensor._wrap(xp.broadcast_to(dead, s.shape)), 0.0, s)
    pt = ember.softmax(s, -1)
    if dead is not None:
        pt = pt * Tensor._wrap((~dead).astype(p.dtype))
    pdt = pt
    if pd is not p:  # dropout: the kept entries scaled by 1 / (1 - p), as in the forward
        safe_p = xp.where(p == 0, 1, p)
        pdt = pt * Tensor._wrap(xp.where(p == 0, 0, pd / safe_p).astype(p.dtype))
    # (g_out is never None here: double backward materializes missing output gradients)
    g_pd = g_out @ vr.mT
    if g_w is not None:
        g_pd = g_pd + g_w
    dv = pdt.mT @ g_out
    t = g_pd * pdt
    ds = t - pt * t.sum(-1, keepdim=True)
    dq = (ds @ kr) * scale
    dk = ds.mT @ qs
    if rep > 1:
        dk, dv = _sum_repeats(dk, rep), _sum_repeats(dv, rep)
    return dq, dk, dv, ds
