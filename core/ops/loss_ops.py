"""Fused binary cross-entropy losses (per element; the caller reduces), analytic gradients for
the input, the target, the weights and ``pos_weight``."""

from __future__ import annotations

from ..autograd.function import Function


def _softplus(xp, x):
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def _sigmoid(xp, x):
    return xp.tanh(x * 0.5) * 0.5 + 0.5  # one transcendental pass, no overflow


class BinaryCrossEntropy(Function):
    """``-w (t log x + (1 - t) log(1 - x))`` with the logs clamped at -100, as PyTorch does."""

    @staticmethod
    def forward(ctx, x, t, w):
        xp = ctx.xp
        log_x = xp.maximum(xp.log(x), -100)
        log_1mx = xp.maximum(xp.log1p(-x), -100)
        out = -(t * log_x + (1 - t) * log_1mx)
        if w is not None:
            out = out * w
        ctx.save_for_backward(x, t, w)
        ctx.logs = (log_x, log_1mx)
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, t, w = ctx.saved_tensors
        xp = ctx.xp
        log_x, log_1mx = ctx.logs
        if ctx._tensor_mode:  # double backward: the logs as functions of x, in the graph
            log_x, log_1mx = xp.maximum(xp.log(x), -100), xp.maximum(xp.log1p(-x), -100)
        g = grad * w if w is not None else grad
        nx, nt, nw = ctx.needs_input_grad
        gx = g * (x - t) / xp.maximum(x * (1 - x), 1e-12) if nx else None
        gt = g * (log_1mx - log_x) if nt else None
        gw = None
        if nw:
            gw = -grad * (t * log_x + (1 - t) * log_1mx)
        return gx, gt, gw


class BinaryCrossEntropyWithLogits(Function):
    """``w ((1 - t) x + (1 + (p - 1) t) softplus(-x))``: BCE on logits, stable for any x."""

    @staticmethod
    def forward(ctx, x, t, w, pos_weight):
        xp = ctx.xp
        sp = _softplus(xp, -x)
        lw = 1 + (pos_weight - 1) * t if pos_weight is not None else 1
        out = (1 - t) * x + lw * sp
        if w is not None:
            out = out * w
        ctx.save_for_backward(x, t, w, pos_weight)
        ctx.sp = sp
        return out.astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, t, w, pos_weight = ctx.saved_tensors
        xp = ctx.xp
        sp = _softplus(xp, -x) if ctx._tensor_mode else ctx.sp  # (double backward: in graph)
        g = grad * w if w is not None else grad
        nx, nt, nw, npw = ctx.needs_input_grad
        gx = gt = gw = gpw = None
        if nx:
            lw = 1 + (pos_weight - 1) * t if pos_weight is not None else 1
            gx = g * ((1 - t) - lw * _sigmoid(xp, -x))
        if nt:
            gt = g * (-x + (pos_weight - 1) * sp) if pos_weight is not None else -g * x
        if nw:
            lw = 1 + (pos_weight - 1) * t if pos_weight is not None else 1
            gw = grad * ((1 - t) * x + lw * sp)
        if npw:
            gpw = g * t * sp
        return gx, gt, gw, gpw
