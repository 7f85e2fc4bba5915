"""Group norm and RMS norm as single fused Functions over the blocked row kernels of
``norm_rows`` (before: layer norm plus a separate multiply and add for group norm, five
elementwise ops and a mean for RMS norm, each with its own backward pass).

Group norm normalises rows of (N * G, C / G * L) and applies its per-channel affine on the
(N, C, L) view; RMS norm is the row kernel without centring, with the affine over columns.
Double backward runs the same formulas as tensor ops.
"""

from __future__ import annotations

import math

from ..autograd.function import Function
from ._lowp import float32_compute
from .norm_rows import normalize_rows, normalize_rows_backward


@float32_compute
class GroupNorm(Function):
    """``group_norm(x, num_groups, weight, bias, eps)`` for (N, C, *) input."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups, eps):
        xp = ctx.xp
        n, c = x.shape[0], x.shape[1]
        spatial = math.prod(x.shape[2:])
        rows = x.reshape(n * groups, (c // groups) * spatial)
        _, (xhat, _, invstd) = normalize_rows(xp, rows, eps, True, None, None, keep_xhat=True)
        xhat3 = xhat.reshape(n, c, spatial)
        if weight is not None:
            out = xhat3 * weight[:, None]
            if bias is not None:
                out += bias[:, None]
        elif bias is not None:
            out = xhat3 + bias[:, None]
        else:
            out = xhat3.copy()
        ctx.save_for_backward(xhat, weight, invstd, x)  # (x: for double backward)
        ctx.meta = (groups, eps)
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return _group_norm_backward_graph(ctx, grad)
        xhat, weight, invstd, _ = ctx.saved_tensors
        xp = ctx.xp
        groups, _ = ctx.meta
        nx, nw, nb = ctx.needs_input_grad[:3]
        shape = grad.shape
        n, c = shape[0], shape[1]
        g3 = grad.reshape(n, c, -1) if grad.size else grad.reshape(n, c, math.prod(shape[2:]))
        xhat3 = xhat.reshape(g3.shape)
        gw = xp.einsum("ncl,ncl->c", g3, xhat3) if nw else None
        gb = g3.sum(axis=(0, 2)) if nb else None
        gx = None
        if nx:
            gh = g3 * weight[:, None] if weight is not None else g3
            gx, _, _ = normalize_rows_backward(
                xp, gh.reshape(xhat.shape), (xhat, None, invstd), None, True, True, False, False
            )
            gx = gx.reshape(shape)
        return gx, gw, gb, None, None


@float32_compute
class RmsNorm(Function):
    """``x / sqrt(mean(x^2) + eps) * weight`` over the trailing ``nd`` dims."""

    @staticmethod
    def forward(ctx, x, weight, nd, eps):
        xp = ctx.xp
        d = math.prod(x.shape[x.ndim - nd :])
        w = weight.reshape(-1) if weight is not None else None
        out, state = normalize_rows(xp, x.reshape(-1, d), eps, False, w, None)
        ctx.save_for_backward(*state, w, x, weight)  # (x, weight: double backward)
        ctx.meta = (nd, eps, None if weight is None else weight.shape)
        return out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return _rms_norm_backward_graph(ctx, grad)
        src, mean, invstd, w, _, _ = ctx.saved_tensors
        nx, nw = ctx.needs_input_grad[:2]
        gx, gw, _ = normalize_rows_backward(
            ctx.xp, grad.reshape(src.shape), (src, mean, invstd), w, False, nx, nw, False
        )
        if gx is not None:
            gx = gx.reshape(grad.shape)
        if gw is not None:
            gw = gw.reshape(ctx.meta[2])
        return gx, gw, None, None


def _group_norm_backward_graph(ctx, grad):
    """GroupNorm's backward as tensor ops (double backward), statistics recomputed from x."""
    _, weight, _, x = ctx.saved_tensors
    groups, eps = ctx.meta
    nx, nw, nb = ctx.needs_input_grad[:3]
    shape = tuple(x.shape)
    n, c = shape[0], shape[1]
    rows = x.reshape(n * groups, -1)
    xc = rows - rows.mean(1, keepdim=True)
    invstd = ((xc * xc).mean(1, keepdim=True) + eps) ** -0.5
    xhat = xc * invstd
    g3 = grad.reshape(n, c, -1)
    xhat3 = xhat.reshape(g3.shape)
    gw = (g3 * xhat3).sum((0, 2)) if nw else None
    gb = g3.sum((0, 2)) if nb else None
    gx = None
    if nx:
        gh = (g3 * weight.reshape(1, c, 1) if weight is not None else g3).reshape(xhat.shape)
        gx = gh - gh.mean(1, keepdim=True) - xhat * (gh * xhat).mean(1, keepdim=True)
        gx = (gx * invstd).reshape(shape)
    return gx, gw, gb, None, None


def _rms_norm_backward_graph(ctx, grad):
    """RmsNorm's backward as tensor ops (double backward), the scale recomputed from x."""
    _, _, _, _, x, weight = ctx.saved_tensors
    nd, eps, w_shape = ctx.meta
    nx, nw = ctx.needs_input_grad[:2]
    d = math.prod(tuple(x.shape)[x.dim() - nd :])
    x2 = x.reshape(-1, d)
    invstd = ((x2 * x2).mean(1, keepdim=True) + eps) ** -0.5
    xhat = x2 * invstd
    g2 = grad.reshape(-1, d)
    gw = (g2 * xhat).sum(0).reshape(w_shape) if nw else None
    gx = None
    if nx:
        gh = g2 * weight.reshape(-1) if weight is not None else g2
        gx = ((gh - xhat * (gh * xhat).mean(1, keepdim=True)) * invstd).reshape(x.shape)
    return gx, gw, None, None
