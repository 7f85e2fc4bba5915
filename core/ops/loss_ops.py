"""Fused losses with analytic gradients: cross-entropy (log_softmax + NLL in one Function, with
class-index or probability targets), NLL, and binary cross-entropy (per element; the caller
reduces) with gradients for the input, the target, the weights and ``pos_weight``."""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend.device import get_array_module
from ._lowp import float32_compute
from .loss_ce_compiled import ce_backward_compiled, ce_compiled, ce_forward_compiled
from .nn_ops import LogSoftmax, Softmax, _log_softmax_rows
from .softmax_kernels import softmax_rows_lse


def _softplus(xp, x):
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def _sigmoid(xp, x):
    return 1 / (1 + xp.exp(-x))  # full relative precision in the negative tail, as torch


class BinaryCrossEntropy(Function):
    """``-w (t log x + (1 - t) log(1 - x))`` with the logs clamped at -100, as PyTorch does."""

    @staticmethod
    def forward(ctx, x, t, w):
        xp = ctx.xp
        with np.errstate(divide="ignore"):  # x of exactly 0 or 1: -inf, clamped to -100 below
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
            # lw sigmoid(x) - p t, as torch: (1 - t) - lw sigmoid(-x) is the same sum, but it
            # cancels to 0 where sigmoid(x) is tiny (x = -18 gave 0 for 1.5e-8)
            pt = pos_weight * t if pos_weight is not None else t
            gx = g * ((1 - t + pt) * _sigmoid(xp, x) - pt)
        if nt:
            gt = g * (-x + (pos_weight - 1) * sp) if pos_weight is not None else -g * x
        if nw:
            lw = 1 + (pos_weight - 1) * t if pos_weight is not None else 1
            gw = grad * ((1 - t) * x + lw * sp)
        if npw:
            gpw = g * t * sp
        return gx, gt, gw, gpw


# ---- cross-entropy and NLL (targets: class indices) ------------------------------------------
def _reduce_rows(xp, per_row, reduction, denom):
    if reduction == "none":
        return per_row
    total = per_row.sum()
    if reduction == "sum":
        return xp.asarray(total, dtype=per_row.dtype)
    # every target ignored: 0/0, which PyTorch returns as nan (without a warning)
    return xp.asarray(total / denom if denom else float("nan"), dtype=per_row.dtype)


def _row_scale(xp, grad, reduction, denom, rows, dtype):
    """d(loss)/d(per-row loss) for each row."""
    if reduction == "none":
        return grad.reshape(rows)
    scale = (
        grad.reshape(())
        if reduction == "sum"
        else grad.reshape(()) * (1.0 / denom if denom else float("nan"))
    )
    return xp.full((rows,), scale, dtype=dtype)


def _row_scale_tensor(grad, reduction, denom, rows):
    """``_row_scale`` in double backward (``grad`` a tensor): (rows, 1), or a scalar."""
    if reduction == "none":
        return grad.reshape(rows, 1)
    g = grad.reshape(())
    return g if reduction == "sum" else g * (1.0 / denom if denom else float("nan"))


def _target_weights(xp, m, c, t, wt, weight, smoothing, valid, all_valid, dtype):
    """The (M, C) target distribution ``q0`` (class weights, smoothing and ignored rows in it)
    whose cross-entropy gradient is ``softmax(x) * q0.sum(1) - q0`` per unit of row scale."""
    q0 = xp.zeros((m, c), dtype=dtype)
    if smoothing > 0:
        w_all = weight if weight is not None else xp.ones((c,), dtype=dtype)
        q0 += w_all * (smoothing / c)
        if not all_valid:
            q0 *= valid[:, None]
    q0[xp.arange(m), t] += (1 - smoothing) * (wt if wt is not None else 1)
    return q0


@float32_compute
class CrossEntropyIndices(Function):
    """Cross-entropy of logits (M, C) against class indices (M,), with class weights,
    ignore_index and label smoothing, as one Function (PyTorch's formula, analytic gradient)."""

    @staticmethod
    def forward(ctx, x, target, weight, ignore_index, reduction, smoothing):
        xp = ctx.xp
        m, c = x.shape
        kern = ce_compiled(xp, x, target, weight, smoothing)
        if kern is not None:
            return ce_forward_compiled(ctx, kern, x, target, weight, ignore_index, reduction)
        # one exp pass gives the softmax (saved: the backward makes no second exp) and each
        # row's log-sum-exp; log_softmax itself is formed only when smoothing needs its sums
        p, lse = softmax_rows_lse(xp, x)
        valid = target != ignore_index
        all_valid = bool(valid.all())
        t = target if all_valid else xp.where(valid, target, 0)
        rows = xp.arange(m)
        picked = x[rows, t] - lse
        wt = None
        if weight is not None:
            wt = weight[t] if all_valid else weight[t] * valid
        elif not all_valid:
            wt = valid.astype(x.dtype)
        per_row = -picked if wt is None else -picked * wt
        if smoothing > 0:
            logp = x - lse[:, None]
            smooth = -(logp @ weight) if weight is not None else -logp.sum(1)
            if not all_valid:
                smooth = smooth * valid
            per_row = per_row * (1 - smoothing) + smooth * (smoothing / c)
        denom = float(m) if wt is None else float(wt.sum())
        ctx.save_for_backward(p, x)  # (x: for double backward, which recomputes softmax)
        ctx.args = (t, wt, weight, reduction, smoothing, denom, valid, all_valid)
        ctx.kern = None
        return _reduce_rows(xp, per_row.astype(x.dtype, copy=False), reduction, denom)

    @staticmethod
    def backward(ctx, grad):
        if ctx.kern is not None and not ctx._tensor_mode:
            return ce_backward_compiled(ctx, grad), None, None, None, None, None
        t, wt, weight, reduction, smoothing, denom, valid, all_valid = ctx.args
        if ctx._tensor_mode:  # double backward: the gradient as ops of x and grad
            x = ctx.saved_tensors[1]
            if ctx.kern is not None:  # the compiled forward kept the raw target only
                t, wt, valid, all_valid = _index_weights(np, t, weight, ctx.ignore, x._data.dtype)
            m, c = x.shape
            q0 = _target_weights(
                get_array_module(x._data),
                m,
                c,
                t,
                wt,
                weight,
                smoothing,
                valid,
                all_valid,
                x._data.dtype,
            )
            scale = _row_scale_tensor(grad, reduction, denom, m)
            p = Softmax.apply(x, 1)
            return ((p * q0.sum(1, keepdims=True) - q0) * scale, None, None, None, None, None)
        p = ctx.saved_array(0)  # the softmax (kept unchanged: the graph may be retained)
        xp = ctx.xp
        m, c = p.shape
        scale = _row_scale(xp, grad, reduction, denom, m, p.dtype)
        rows = xp.arange(m)
        # d loss_i / d x_i = sum_c(q_ic) * softmax_i - q_i, q the (weighted) target distribution
        if smoothing > 0:
            w_all = weight if weight is not None else xp.ones((c,), dtype=p.dtype)
            coef = scale if all_valid else scale * valid
            q = ((coef * (smoothing / c))[:, None] * w_all).astype(p.dtype, copy=False)
            hot = (1 - smoothing) * scale * (wt if wt is not None else 1)
            q[rows, t] += hot
            gx = p * q.sum(1, keepdims=True)
            gx -= q
        else:
            coef = scale * wt if wt is not None else scale
            gx = p * coef.astype(p.dtype, copy=False)[:, None]
            gx[rows, t] -= coef
        return gx, None, None, None, None, None


def _index_weights(xp, target, weight, ignore_index, dtype):
    """``(t, wt, valid, all_valid)``: targets with ignored rows sent to class 0, the per-row
    weights (None when all are 1) and the rows not ignored."""
    valid = target != ignore_index
    all_valid = bool(valid.all())
    t = target if all_valid else xp.where(valid, target, 0)
    wt = None
    if weight is not None:
        wt = weight[t] if all_valid else weight[t] * valid
    elif not all_valid:
        wt = valid.astype(dtype)
    return t, wt, valid, all_valid


@float32_compute
class NllIndices(Function):
    """Negative log-likelihood of log-probabilities (M, C) against class indices (M,)."""

    @staticmethod
    def forward(ctx, logp, target, weight, ignore_index, reduction):
        xp = ctx.xp
        m = logp.shape[0]
        valid = target != ignore_index
        all_valid = bool(valid.all())
        t = target if all_valid else xp.where(valid, target, 0)
        wt = None
        if weight is not None:
            wt = weight[t] if all_valid else weight[t] * valid
        elif not all_valid:
            wt = valid.astype(logp.dtype)
        picked = logp[xp.arange(m), t]
        per_row = -picked if wt is None else -picked * wt
        denom = float(m) if wt is None else float(wt.sum())
        ctx.shape = logp.shape
        ctx.args = (t, wt, reduction, denom)
        return _reduce_rows(xp, per_row.astype(logp.dtype, copy=False), reduction, denom)

    @staticmethod
    def backward(ctx, grad):
        t, wt, reduction, denom = ctx.args
        m, c = ctx.shape
        if ctx._tensor_mode:  # double backward: linear in grad, constant in logp
            xp = get_array_module(grad._data)
            q = xp.zeros((m, c), dtype=grad._data.dtype)
            q[xp.arange(m), t] = wt if wt is not None else 1
            return -q * _row_scale_tensor(grad, reduction, denom, m), None, None, None, None
        xp = ctx.xp
        scale = _row_scale(xp, grad, reduction, denom, m, grad.dtype)
        coef = scale * wt if wt is not None else scale
        gx = xp.zeros((m, c), dtype=grad.dtype)
        gx[xp.arange(m), t] = -coef
        return gx, None, None, None, None


@float32_compute
class CrossEntropyProbs(Function):
    """Cross-entropy of logits (M, C) against class probabilities (M, C)."""

    @staticmethod
    def forward(ctx, x, target, weight, reduction, smoothing):
        xp = ctx.xp
        m, c = x.shape
        logp = _log_softmax_rows(xp, x)
        y = target * (1 - smoothing) + smoothing / c if smoothing > 0 else target
        q = y * weight if weight is not None else y
        per_row = -(logp * q).sum(1)
        ctx.save_for_backward(logp, q, x, target)  # (x, target: for double backward)
        ctx.args = (weight, reduction, smoothing, float(m))
        return _reduce_rows(xp, per_row.astype(x.dtype, copy=False), reduction, float(m))

    @staticmethod
    def backward(ctx, grad):
        weight, reduction, smoothing, m = ctx.args
        if ctx._tensor_mode:  # double backward: the gradients as ops of x, target and grad
            _, _, x, target = ctx.saved_tensors
            rows, c = x.shape
            scale = _row_scale_tensor(grad, reduction, m, rows)
            y = target * (1 - smoothing) + smoothing / c if smoothing > 0 else target
            q = y * weight if weight is not None else y
            gx = gy = None
            if ctx.needs_input_grad[0]:
                gx = (Softmax.apply(x, 1) * q.sum(1, keepdims=True) - q) * scale
            if ctx.needs_input_grad[1]:
                gy = -LogSoftmax.apply(x, 1) * scale * (1 - smoothing)
                if weight is not None:
                    gy = gy * weight
            return gx, gy, None, None, None
        logp, q = ctx.saved_array(0), ctx.saved_array(1)
        xp = ctx.xp
        scale = _row_scale(xp, grad, reduction, m, logp.shape[0], logp.dtype)[:, None]
        gx = gy = None
        if ctx.needs_input_grad[0]:
            gx = (xp.exp(logp) * q.sum(1, keepdims=True) - q) * scale
        if ctx.needs_input_grad[1]:
            gy = -logp * scale * (1 - smoothing)
            if weight is not None:
                gy = gy * weight
        return gx, gy, None, None, None
