"""Fused normalisation ops with analytic gradients: batch norm (training and eval, running
statistics updated in place) and layer norm over trailing dims (also the core of group and
instance norm).

Backward formulas use the per-channel sums ``sum(g)`` and ``sum(g * xhat)`` that the weight
and bias gradients need anyway, so the input gradient costs one more pass over the data.
"""

from __future__ import annotations

import math

from ..autograd.function import Function
from ._lowp import float32_compute
from .norm_group_rms import (
    _group_compiled,
    batch_norm_backward_compiled,
    batch_norm_forward_compiled,
)
from .norm_rows import _rows_saved, _rows_state, normalize_rows, normalize_rows_backward


@float32_compute
class BatchNorm(Function):
    """Batch norm over dim 1 of (N, C, *) inputs, computed on an (N, C, L) view."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, training, momentum, eps):
        xp = ctx.xp
        shape_in = x.shape
        c = shape_in[1]
        x3 = x.reshape(shape_in[0], c, math.prod(shape_in[2:]))  # (-1 fails on empty input)
        n = x3.shape[0] * x3.shape[2]
        ctx.compiled = None
        kern = _group_compiled(xp, x, weight, bias) if training else None
        if kern is not None:  # one kernel, affine folded in (ops/_numba_group_norm.py)
            out, mean, var = batch_norm_forward_compiled(ctx, kern, x3, weight, bias, eps)
            update_running_stats(running_mean, running_var, mean, var, n, momentum)
            ctx.save_for_backward(None, weight, None, x)  # (x: double backward)
            ctx.meta = (training, shape_in, n)
            ctx.eps = eps
            return out.reshape(shape_in)
        if training:
            mean = x3.sum(axis=(0, 2)) / n
            xhat = x3 - mean[:, None]
            var = xp.einsum("ncl,ncl->c", xhat, xhat) / n
            update_running_stats(running_mean, running_var, mean, var, n, momentum)
            invstd = (1 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
        else:
            invstd = (1 / xp.sqrt(running_var + eps)).astype(x.dtype, copy=False)
            xhat = x3 - running_mean.astype(x.dtype, copy=False)[:, None]
        out = scale_shift(xhat, invstd, weight, bias)
        # (x: for double backward, which recomputes the statistics from it)
        ctx.save_for_backward(xhat, weight, invstd, x)
        ctx.meta = (training, shape_in, n)
        ctx.eps = eps
        return out.reshape(shape_in)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return _batch_norm_backward_graph(ctx, grad)
        if ctx.compiled is not None:
            gx, gw, gb = batch_norm_backward_compiled(ctx, grad)
            return (gx, gw, gb, None, None, None, None, None)
        xhat, weight, invstd, _ = ctx.saved_tensors  # (checks x, weight: as PyTorch does)
        xp = ctx.xp
        training, shape_in, n = ctx.meta
        nx, nw, nb = ctx.needs_input_grad[:3]
        g3 = grad.reshape(xhat.shape)
        gb = g3.sum(axis=(0, 2)) if (nb or (nx and training)) else None
        gw = xp.einsum("ncl,ncl->c", g3, xhat) if (nw or (nx and training)) else None
        gx = None
        if nx:
            k = invstd if weight is None else invstd * weight
            if training:
                gx = batch_norm_input_grad(g3, xhat, gb, gw, n, k)
            else:
                gx = g3 * k[:, None]
            gx = gx.reshape(shape_in)
        return (gx, gw if nw else None, gb if nb else None, None, None, None, None, None)


def update_running_stats(running_mean, running_var, mean, var, n: float, momentum: float) -> None:
    """Blend batch statistics over ``n`` values into the running ones, in place (the variance
    unbiased, as PyTorch keeps it)."""
    if running_mean is not None:
        running_mean *= 1 - momentum
        running_mean += (momentum * mean).astype(running_mean.dtype, copy=False)
    if running_var is not None:
        unbiased = var * (n / (n - 1)) if n > 1 else var
        running_var *= 1 - momentum
        running_var += (momentum * unbiased).astype(running_var.dtype, copy=False)


def scale_shift(xhat, invstd, weight, bias):
    """Scale the centred (N, C, L) ``xhat`` by ``invstd`` in place; return the affine output."""
    xhat *= invstd[:, None]
    out = xhat * weight[:, None] if weight is not None else xhat.copy()
    if bias is not None:
        out += bias[:, None]
    return out


def batch_norm_input_grad(g3, xhat, gb, gw, n: float, k):
    """Batch norm's input gradient in training, from the per-channel sums ``gb = sum(g)`` and
    ``gw = sum(g * xhat)`` over ``n`` values and ``k = invstd * weight``."""
    gx = g3 - (gb / n)[:, None]
    gx -= xhat * (gw / n)[:, None]
    gx *= k[:, None]
    return gx


@float32_compute
class LayerNorm(Function):
    """Normalise over the trailing ``nd`` dims, then an optional elementwise affine."""

    @staticmethod
    def forward(ctx, x, weight, bias, nd, eps):
        xp = ctx.xp
        # rows of a 2-D input over its last dim, and 1-D affine vectors, are used as they are
        # (the common ``LayerNorm(d)`` on (n, d): three reshape calls less, ~0.4 us)
        if nd == 1 and x.ndim == 2:
            x2 = x
        else:
            d = 1
            for s in x.shape[x.ndim - nd :]:
                d *= s
            x2 = x.reshape(-1, d)
        w = weight if weight is None or weight.ndim == 1 else weight.reshape(-1)
        b = bias if bias is None or bias.ndim == 1 else bias.reshape(-1)
        out, state = normalize_rows(xp, x2, eps, True, w, b)
        ctx.save_for_backward(*_rows_saved(state, x2, w), x, weight)  # (x, weight: 2nd order)
        ctx.shapes = (x.shape, None if weight is None else weight.shape)
        ctx.eps, ctx.nd = eps, nd
        return out if x2 is x else out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return _layer_norm_backward_graph(ctx, grad)
        # (checks x and weight, as PyTorch)
        src, mean, invstd, w = _rows_state(ctx.saved_tensors, ctx.nd)
        xp = ctx.xp
        x_shape, w_shape = ctx.shapes
        nx, nw, nb = ctx.needs_input_grad[:3]
        g2 = grad.reshape(src.shape)
        gx, gw, gb = normalize_rows_backward(xp, g2, (src, mean, invstd), w, True, nx, nw, nb)
        if gw is not None:
            gw = gw.reshape(w_shape)
        if gb is not None:
            gb = gb.reshape(w_shape)
        if gx is not None:
            gx = gx.reshape(x_shape)
        return gx, gw, gb, None, None


def _batch_norm_backward_graph(ctx, grad):
    """BatchNorm's backward for double backward, as tensor ops. Training mode recomputes the
    batch statistics from ``x``; eval mode normalises with the (constant) running ones."""
    xhat_c, weight, invstd_c, x = ctx.saved_tensors
    training, shape_in, n = ctx.meta
    nx, nw, nb = ctx.needs_input_grad[:3]
    c = shape_in[1]
    x3 = x.reshape(shape_in[0], c, -1)
    if training:
        xc = x3 - x3.mean((0, 2), keepdim=True)
        invstd = ((xc * xc).mean((0, 2), keepdim=True) + ctx.eps) ** -0.5
        xhat = xc * invstd
    else:  # xhat is linear in x with constant statistics: rebuild it through x
        invstd = invstd_c.reshape(1, c, 1)
        xhat = x3 * invstd + (xhat_c.reshape(x3.shape) - x3.detach() * invstd)
    g3 = grad.reshape(x3.shape)
    gb = g3.sum((0, 2)) if (nb or (nx and training)) else None
    gw = (g3 * xhat).sum((0, 2)) if (nw or (nx and training)) else None
    gx = None
    if nx:
        k = invstd if weight is None else invstd * weight.reshape(1, c, 1)
        if training:
            gx = (g3 - gb.reshape(1, c, 1) / n - xhat * (gw.reshape(1, c, 1) / n)) * k
        else:
            gx = g3 * k
        gx = gx.reshape(shape_in)
    return (gx, gw if nw else None, gb if nb else None, None, None, None, None, None)


def _layer_norm_backward_graph(ctx, grad):
    """LayerNorm's backward for double backward: the same formulas as tensor ops, with the
    normalised input recomputed from ``x`` so that its dependence on ``x`` is in the graph."""
    _, _, _, _, x, weight = ctx.saved_tensors
    x_shape, w_shape = ctx.shapes
    nx, nw, nb = ctx.needs_input_grad[:3]
    d = 1
    for s in x_shape[len(x_shape) - ctx.nd :]:
        d *= s
    x2 = x.reshape(-1, d)
    xc = x2 - x2.mean(1, keepdim=True)
    invstd = ((xc * xc).mean(1, keepdim=True) + ctx.eps) ** -0.5
    xhat = xc * invstd
    g2 = grad.reshape(-1, d)
    gw = (g2 * xhat).sum(0).reshape(w_shape) if nw else None
    gb = g2.sum(0).reshape(w_shape) if nb else None
    gx = None
    if nx:
        gxhat = g2 * weight.reshape(-1) if weight is not None else g2
        gx = gxhat - gxhat.mean(1, keepdim=True) - xhat * (gxhat * xhat).mean(1, keepdim=True)
        gx = (gx * invstd).reshape(x_shape)
    return gx, gw, gb, None, None
