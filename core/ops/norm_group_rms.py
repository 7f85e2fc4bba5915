"""Group norm and RMS norm as single fused Functions over the blocked row kernels of
``norm_rows`` (before: layer norm plus a separate multiply and add for group norm, five
elementwise ops and a mean for RMS norm, each with its own backward pass).

Group norm normalises rows of (N * G, C / G * L) and applies its per-channel affine on the
(N, C, L) view; RMS norm is the row kernel without centring, with the affine over columns.
Double backward runs the same formulas as tensor ops.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..autograd.function import Function
from ._kernel_split import split_call
from ._lowp import float32_compute
from .norm_rows import (
    _rows_saved,
    _rows_state,
    normalize_rows,
    normalize_rows_backward,
    split_min,
)

_numba = None  # ``_numba_group_norm`` once loaded; False when unavailable
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_FLOATS = (np.float32, np.float64)


def _group_compiled(xp, x, *affine):
    """The compiled group-norm kernels when they apply: a non-empty NumPy float32/float64 ``x``
    with the affine (when given) of its dtype, numba installed, ``EMBER_NUMBA`` not ``0``."""
    global _numba
    dt = x.dtype
    # (identity first, and a loop: ``dtype in (np.float32, ...)`` and ``any(<generator>)``
    # cost ~0.5 us on every small call)
    if xp is not np or (dt is not _F32 and dt is not _F64 and dt not in _FLOATS) or x.size == 0:
        return None
    for a in affine:
        if a is not None and a.dtype != dt:
            return None
    if _numba is None:
        _numba = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_group_norm  # (numba is an optional extra, "fast")

            if _numba_group_norm.AVAILABLE:
                _numba = _numba_group_norm
    return _numba or None


def _group_forward_compiled(ctx, kern, x, weight, bias, groups, eps):
    n, c = x.shape[0], x.shape[1]
    x4 = np.ascontiguousarray(x).reshape(n, groups, c // groups, -1)
    dt = x.dtype
    w = np.ones(c, dt) if weight is None else np.ascontiguousarray(weight)
    b = np.zeros(c, dt) if bias is None else np.ascontiguousarray(bias)
    out = np.empty(x4.shape, dt)  # (x4 is C-contiguous; empty_like is Python around this)
    mean = np.empty((n, groups))
    invstd = np.empty((n, groups))
    w2, b2 = w.reshape(groups, -1), b.reshape(groups, -1)
    if x.size < 2 * split_min():  # one slice anyway: no closure, no slices
        kern.group_norm_forward(x4, w2, b2, eps, out, mean, invstd)
    else:
        split_call(
            kern.group_norm_forward,
            n,
            x4[0].size,
            lambda lo, hi: (x4[lo:hi], w2, b2, eps, out[lo:hi], mean[lo:hi], invstd[lo:hi]),
            split_min(),
        )
    # only x and the (N, G) statistics are kept, as PyTorch; the backward recomputes xhat
    ctx.save_for_backward(None, weight, None, x)
    ctx.compiled = (kern, x4, w2, mean, invstd)
    return out.reshape(x.shape)


def _group_backward_compiled(ctx, grad):
    kern, x4, w, mean, invstd = ctx.compiled
    nx, nw, nb = ctx.needs_input_grad[:3]
    g4 = np.ascontiguousarray(grad, dtype=x4.dtype).reshape(x4.shape)
    gx = np.empty(x4.shape, x4.dtype) if nx else np.empty((0, 0, 0, 0), x4.dtype)
    sg = np.empty(x4.shape[:3])
    sgx = np.empty(x4.shape[:3])
    if x4.size < 2 * split_min():  # one slice anyway (see the forward)
        kern.group_norm_backward(g4, x4, w, mean, invstd, nx, gx, sg, sgx)
    else:
        split_call(
            kern.group_norm_backward,
            x4.shape[0],
            x4[0].size,
            lambda lo, hi: (
                *(a[lo:hi] for a in (g4, x4)),
                w,
                *(a[lo:hi] for a in (mean, invstd)),
                nx,
                *(a[lo:hi] for a in (gx, sg, sgx)),
            ),
            split_min(),
        )
    c = grad.shape[1]
    gw = sgx.sum(axis=0).reshape(c).astype(x4.dtype) if nw else None
    gb = sg.sum(axis=0).reshape(c).astype(x4.dtype) if nb else None
    return (gx.reshape(grad.shape) if nx else None), gw, gb, None, None


def batch_norm_forward_compiled(ctx, kern, x3, weight, bias, eps):
    """Batch norm's training forward on the (N, C, L) ``x3`` by the compiled kernel; returns
    ``(out, mean, biased var)`` (statistics float64) and keeps what the backward needs."""
    c = x3.shape[1]
    x3 = np.ascontiguousarray(x3)
    dt = x3.dtype
    w = np.ones(c, dt) if weight is None else np.ascontiguousarray(weight)
    b = np.zeros(c, dt) if bias is None else np.ascontiguousarray(bias)
    out = np.empty_like(x3)
    mean, var, invstd = (np.empty(c) for _ in range(3))
    split_call(
        kern.batch_norm_forward,
        c,
        x3.shape[0] * x3.shape[2],
        lambda lo, hi: (x3, w, b, float(eps), lo, hi, out, mean, var, invstd),
        split_min(),
    )
    ctx.compiled = (kern, x3, w, mean, invstd)
    return out, mean, var


def batch_norm_backward_compiled(ctx, grad):
    """Batch norm's training backward by the compiled kernel: ``(gx, gw, gb)``."""
    kern, x3, w, mean, invstd = ctx.compiled
    nx, nw, nb = ctx.needs_input_grad[:3]
    g3 = np.ascontiguousarray(grad, dtype=x3.dtype).reshape(x3.shape)
    gx = np.empty_like(x3) if nx else np.empty((0, 0, 0), x3.dtype)
    c = x3.shape[1]
    sg, sgx = np.empty(c), np.empty(c)
    split_call(
        kern.batch_norm_backward,
        c,
        x3.shape[0] * x3.shape[2],
        lambda lo, hi: (g3, x3, w, mean, invstd, nx, lo, hi, gx, sg, sgx),
        split_min(),
    )
    gw = sgx.astype(x3.dtype) if nw else None
    gb = sg.astype(x3.dtype) if nb else None
    return (gx.reshape(grad.shape) if nx else None), gw, gb


@float32_compute
class GroupNorm(Function):
    """``group_norm(x, num_groups, weight, bias, eps)`` for (N, C, *) input."""

    @staticmethod
    def forward(ctx, x, weight, bias, groups, eps):
        xp = ctx.xp
        kern = _group_compiled(xp, x, weight, bias)
        if kern is not None:  # one kernel, affine folded in (ops/_numba_group_norm.py)
            ctx.meta = (groups, eps)
            return _group_forward_compiled(ctx, kern, x, weight, bias, groups, float(eps))
        ctx.compiled = None
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
        if ctx.compiled is not None:
            return _group_backward_compiled(ctx, grad)
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
        # 2-D rows over the last dim and a 1-D weight as they are (as LayerNorm's forward)
        x2 = x if nd == 1 and x.ndim == 2 else x.reshape(-1, math.prod(x.shape[x.ndim - nd :]))
        w = weight if weight is None or weight.ndim == 1 else weight.reshape(-1)
        out, state = normalize_rows(xp, x2, eps, False, w, None)
        ctx.save_for_backward(*_rows_saved(state, x2, w), x, weight)  # (x, weight: 2nd order)
        ctx.meta = (nd, eps, None if weight is None else weight.shape)
        return out if x2 is x else out.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return _rms_norm_backward_graph(ctx, grad)
        src, mean, invstd, w = _rows_state(ctx.saved_tensors, ctx.meta[0])
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
