"""flex_attention in training: one autograd node over the banded loop, whose backward
recomputes each band's scores from q/k/v and the saved log-sum-exp (as flash attention does).

Autograd through the eager band loop keeps every band's scores and softmax (memory grows
with ``L x S``); this node keeps q, k, v, the output and the ``(B, H, L)`` log-sum-exp only,
so one band of scores is live at a time in backward as in forward. A score_mod's captured
tensors that need a gradient (a learned bias) are found once by running the score_mod on a
1-element probe and walking its graph to the leaves; they become inputs of the node, and each
band's backward runs the score_mod under ``enable_grad`` on the recomputed scores and calls
``autograd.grad`` on it for the scores' and the captured tensors' gradients.
"""

from __future__ import annotations

from ...autograd.function import Function
from ...tensor import Tensor
from ._mods import _call_mod, _index


def _captured_leaves(score_mod, xp) -> list[Tensor]:
    """The leaf tensors requiring grad that ``score_mod``'s output depends on, besides the
    score (found on a 1x1x1x1 probe)."""
    import ember

    probe = Tensor._wrap(xp.zeros((1, 1, 1, 1), dtype=xp.float32)).requires_grad_()
    zero = xp.zeros(1, dtype=xp.int64)
    with ember.enable_grad():
        out = _call_mod(score_mod, probe, *(_index(xp, zero, d) for d in range(4)))
    if not isinstance(out, Tensor) or not out.requires_grad:
        return []
    if out.grad_fn is None:  # the mod returned a captured leaf itself
        return [] if out is probe else [out]
    leaves, seen, stack = [], set(), [out.grad_fn]
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        for edge in getattr(fn, "_edges", None) or ():
            if edge is None:
                continue
            node = edge[0]
            if isinstance(node, Function):
                stack.append(node)
            elif node is not probe and all(node is not t for t in leaves):
                leaves.append(node)
    return leaves


class FlexAttentionFn(Function):
    """out = softmax(score_mod(q k^T * scale) masked) v over bands of query rows; the plan
    (score_mod, bands, masks) arrives as keyword arguments, the captured tensors after v."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, q, k, v, *captured, plan):
        xp = ctx.xp
        B, H, L, _ = q.shape
        out = xp.zeros((B, H, L, v.shape[-1]), dtype=q.dtype)
        lse = xp.full((B, H, L), -xp.inf, dtype=q.dtype)
        for r0, r1, kv_pos, s, _ in _band_scores(xp, q, k, plan, grad=False):
            if s is None:
                continue  # nothing to attend to: zeros, lse -inf
            m = xp.max(s, axis=-1, keepdims=True)
            m = xp.where(xp.isneginf(m), 0, m).astype(s.dtype)
            p = xp.exp(s - m)
            denom = p.sum(-1, keepdims=True)
            ok = denom > 0
            vb = v if kv_pos is None else v[:, :, kv_pos]
            out[:, :, r0:r1] = xp.matmul(p, vb) / xp.where(ok, denom, 1)
            lse[:, :, r0:r1] = xp.where(ok, xp.log(xp.where(ok, denom, 1)) + m, -xp.inf)[..., 0]
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.plan = plan
        return out

    @staticmethod
    def backward(ctx, grad):
        import ember

        xp = ctx.xp
        q, k, v, out, lse = ctx.saved_tensors
        leaves = ctx.plan["leaves"]  # the captured inputs, in order
        dq, dk, dv = xp.zeros_like(q), xp.zeros_like(k), xp.zeros_like(v)
        dcap = [None] * len(leaves)
        delta = (grad * out).sum(-1, keepdims=True)  # rowsum(dO * O): (B, H, L, 1)
        for r0, r1, kv_pos, s, mod in _band_scores(xp, q, k, ctx.plan, grad=True):
            if s is None:
                continue
            rl = lse[:, :, r0:r1, None]
            # a row with lse -inf has only -inf scores: exp(s - 0) gives its zeros
            p = xp.exp(s - xp.where(xp.isneginf(rl), 0, rl)).astype(q.dtype, copy=False)
            kb = k if kv_pos is None else k[:, :, kv_pos]
            vb = v if kv_pos is None else v[:, :, kv_pos]
            g = grad[:, :, r0:r1]
            dvb = xp.matmul(p.swapaxes(-1, -2), g)
            ds = p * (xp.matmul(g, vb.swapaxes(-1, -2)) - delta[:, :, r0:r1])
            if mod is not None:  # through the score_mod: d(raw scores) and d(captured)
                s_in, s_mod = mod
                grads = ember.autograd.grad(
                    s_mod,
                    [s_in, *leaves],
                    Tensor._wrap(ds.astype(s_mod._data.dtype)),
                    retain_graph=True,
                    allow_unused=True,
                )
                ds = xp.zeros_like(ds) if grads[0] is None else grads[0]._data
                for i, gi in enumerate(grads[1:]):
                    if gi is not None:
                        dcap[i] = gi._data if dcap[i] is None else dcap[i] + gi._data
            ds = ds * ctx.plan["scale"]
            dq[:, :, r0:r1] += xp.matmul(ds, kb)
            dkb = xp.matmul(ds.swapaxes(-1, -2), q[:, :, r0:r1])
            if kv_pos is None:
                dk += dkb
                dv += dvb
            else:  # the band's key positions (a slice or distinct indices)
                dk[:, :, kv_pos] += dkb
                dv[:, :, kv_pos] += dvb
        return (dq, dk, dv, *dcap)


def _band_scores(xp, q, k, plan, grad: bool):
    """Per band: (r0, r1, kv_pos, scores, mod) with the scaled, score-modded, masked scores
    as an array (None when the band attends to nothing) and, under ``grad`` with a score_mod,
    ``(s_in, s_mod)``: the raw-score leaf and the score_mod's output to differentiate."""
    import ember

    from .flex_attention import _allowed, _band_plan

    B, H, L, _ = q.shape
    S = k.shape[-2]
    score_mod, mask_mod, sc = plan["score_mod"], plan["mask_mod"], plan["scale"]
    b_idx, h_idx = _index(xp, xp.arange(B), 0), _index(xp, xp.arange(H), 1)
    for r0, r1, cols, keep in _band_plan(xp, plan["block_mask"], L, S, plan["rows"]):
        if cols is not None and len(cols) == 0:
            yield r0, r1, cols, None, None
            continue
        kv_pos = None if cols is None else xp.asarray(cols, dtype=xp.int64)
        if kv_pos is not None and int(kv_pos[-1]) - int(kv_pos[0]) + 1 == len(kv_pos):
            kv_pos = slice(int(kv_pos[0]), int(kv_pos[-1]) + 1)  # one run of keys: views
        kb = k if kv_pos is None else k[:, :, kv_pos]
        s = xp.matmul(q[:, :, r0:r1], kb.swapaxes(-1, -2)) * sc
        pos = xp.arange(S) if kv_pos is None else xp.asarray(cols, dtype=xp.int64)
        mod = None
        if score_mod is not None:
            s_in = Tensor._wrap(s)
            args = (b_idx, h_idx, _index(xp, xp.arange(r0, r1), 2), _index(xp, pos, 3))
            if grad:
                s_in.requires_grad_()
                with ember.enable_grad():
                    s_mod = _call_mod(score_mod, s_in, *args)
                    if isinstance(s_mod, Tensor) and tuple(s_mod.shape) != s.shape:
                        s_mod = s_mod.expand(s.shape)
            else:
                with ember.no_grad():
                    s_mod = _call_mod(score_mod, s_in, *args)
            if not isinstance(s_mod, Tensor):
                raise TypeError(f"score_mod must return a Tensor, got {type(s_mod).__name__}")
            s = xp.broadcast_to(s_mod._data, s.shape).astype(s.dtype)
            mod = (s_in, s_mod) if grad else None
        allowed = _allowed(xp, keep, mask_mod, B, H, r0, r1, pos)
        if allowed is not None:
            s = xp.where(allowed, s, -xp.inf)
        yield r0, r1, kv_pos, s, mod


def flex_train(query, key, value, score_mod, block_mask, mask_mod, scale, rows, xp):
    """The training path of ``flex_attention`` (no aux outputs): one FlexAttentionFn node."""
    leaves = [] if score_mod is None else _captured_leaves(score_mod, xp)
    plan = {
        "score_mod": score_mod,
        "block_mask": block_mask,
        "mask_mod": mask_mod,
        "scale": scale,
        # backward holds ~5 band-sized arrays (scores, p, dp, ds, temporaries): a quarter of
        # the inference band keeps its peak near the forward's
        "rows": max(1, rows // 4),
        "leaves": leaves,
    }
    return FlexAttentionFn.apply(query, key, value, *leaves, plan=plan)
