"""The convolution Functions (autograd): ``Conv``, ``ConvTranspose``, ``ConvWeightGrad`` (which
close over each other so that double backward works) and ``Unfold`` / ``Fold``. The kernels
they call -- layouts, GEMM orientations, the blocked and direct paths -- are in ``conv``, which
re-exports these names.
"""

from __future__ import annotations

import math

from ..autograd.function import Function
from . import conv_lift as _lift
from ._lowp import float32_compute
from .conv import (
    ConvGeom,
    _bias_grad,
    _channels_first,
    _pointwise,
    _transposed_direct,
    conv_forward,
    conv_input_grad,
    conv_weight_grad,
)
from .conv_blocked import use_blocked
from .conv_columns import col2im, im2col
from .conv_depthwise import depthwise_weight_bias_grad, is_depthwise
from .conv_direct import DirectCols, use_direct_input_grad, use_direct_weight_grad
from .conv_direct_cl import share_g, use_direct_cl_weight_grad
from .conv_direct_narrow import use_padded_input_grad
from .conv_split import split_backward


# ---- Functions -----------------------------------------------------------------------------
@float32_compute
class Conv(Function):
    """y = conv(x, w) + b over N spatial dims."""

    @staticmethod
    def forward(ctx, x, w, b, geom):
        ctx.geom = geom
        if x.shape[0] == 0:  # an empty batch (detection heads on zero RoIs): no kernel runs
            ctx.cols = None
            ctx.save_for_backward(x, w)
            return ctx.xp.zeros((0, w.shape[0]) + tuple(geom.out_size), dtype=x.dtype)
        ctx.lifted = _lift.liftable(ctx.xp, x, w.shape, geom)  # 1-D as 2-D (conv_lift)
        if ctx.lifted:
            y, cols = conv_forward(ctx.xp, _lift.up(x), _lift.up(w), b, _lift.lift(geom))
            y = _lift.down(y)
        else:
            y, cols = conv_forward(ctx.xp, x, w, b, geom)
        # The columns are the weight gradient's operand; keep them only when it is needed.
        ctx.cols = cols if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(x, w)
        return y

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        geom, need = ctx.geom, ctx.needs_input_grad
        gx = gw = gb = None
        if ctx._tensor_mode:
            if need[0]:
                gx = ConvTranspose.apply(grad, w, None, geom)
            if need[1]:
                gw = ConvWeightGrad.apply(x, grad, tuple(w.shape), geom)
        else:
            xp, cols = ctx.xp, ctx.cols
            ctx.cols = None
            if x.shape[0] == 0:
                gx = xp.zeros_like(x) if need[0] else None
                gw = xp.zeros_like(w) if need[1] else None
                gb = xp.zeros(w.shape[0], dtype=w.dtype) if need[2] else None
                return gx, gw, gb, None
            if grad.dtype.kind == "c":  # the conjugate Wirtinger gradient, as PyTorch
                x, w, cols = _conj(x), _conj(w), _conj(cols)
            w_shape = w.shape
            if getattr(ctx, "lifted", False):  # as the forward ran: 2-D (conv_lift)
                x, grad, w, geom = _lift.up(x), _lift.up(grad), _lift.up(w), _lift.lift(geom)
            split = None
            if not is_depthwise(w.shape, geom):  # at two threads: by parts (conv_split)
                kernels = (conv_input_grad, conv_weight_grad, _bias_grad)
                split = split_backward(xp, x, grad, w, geom, cols, need, kernels, _backward)
            gx, gw, gb = _backward(xp, x, grad, w, geom, cols, need) if split is None else split
            if getattr(ctx, "lifted", False):
                gx, gw = _lift.down(gx), None if gw is None else gw.reshape(w_shape)
            return gx, gw, gb, None
        if need[2]:
            gb = _bias_grad(ctx.xp, grad)
        return gx, gw, gb, None


def _backward(xp, x, grad, w, geom, cols, need):
    """(dx, dw, db) of ``Conv`` for arrays."""
    gx = gw = gb = None
    # (N, O, *out) -> (G, O/g, N * L) once for both GEMM paths that read it; the
    # depthwise, direct input-gradient and blocked weight-gradient paths do not
    g_cf = None
    if (
        not is_depthwise(w.shape, geom)
        and not _pointwise(geom)
        and (
            (
                need[0]
                and _transposed_direct(xp, grad, w.shape, geom)[0] is None
                and not use_direct_input_grad(xp, grad, w.shape, geom)
                and not use_padded_input_grad(xp, grad, w.shape, geom)
            )
            or (
                need[1]
                and not isinstance(cols, DirectCols)
                and not use_direct_cl_weight_grad(cols)
                and (cols is not None or not use_blocked(xp, x, w.shape, geom))
                and (cols is not None or not use_direct_weight_grad(xp, x, w.shape, geom))
            )
        )
    ):
        g_cf = _channels_first(xp, grad, geom.groups)
    if need[1] and need[2] and is_depthwise(w.shape, geom):
        both = depthwise_weight_bias_grad(xp, x, grad, w.shape, geom)  # one pass over g
        if both is not None:
            need = (need[0], False, False)
            gw, gb = both
    # g's channels-last rows made once for both direct channels-last kernels (share_g)
    with share_g(grad, cols, need[0] and need[1]):
        if need[0]:
            gx = conv_input_grad(xp, grad, w, geom, g_cf)
        if need[1]:
            gw = conv_weight_grad(xp, x, grad, w.shape, geom, cols, g_cf)
    if need[2]:
        gb = _bias_grad(xp, grad)
    return gx, gw, gb


def _conj(a):
    return a.conj() if a is not None else None


@float32_compute
class ConvTranspose(Function):
    """y = conv_transpose(x, w) + b: the input gradient of ``Conv`` with w, as an op."""

    @staticmethod
    def forward(ctx, x, w, b, geom):
        ctx.geom = geom
        ctx.save_for_backward(x, w)
        y = conv_input_grad(ctx.xp, x, w, geom)
        if b is not None:
            y += b.reshape((-1,) + (1,) * len(geom.kernel))
        return y

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        geom, need = ctx.geom, ctx.needs_input_grad
        gx = gw = gb = None
        if ctx._tensor_mode:
            if need[0]:
                gx = Conv.apply(grad, w, None, geom)
            if need[1]:
                gw = ConvWeightGrad.apply(grad, x, tuple(w.shape), geom)
        else:
            xp, cols = ctx.xp, None
            if grad.dtype.kind == "c":
                x, w = _conj(x), _conj(w)
            if x.shape[0] == 0:  # an empty batch
                gx = xp.zeros_like(x) if need[0] else None
                gw = xp.zeros_like(w) if need[1] else None
                need = (False, False, need[2])
            if need[0]:
                gx, cols = conv_forward(xp, grad, w, None, geom)
            if need[1]:
                gw = conv_weight_grad(xp, grad, x, w.shape, geom, cols)
        if need[2]:
            gb = _bias_grad(ctx.xp, grad)
        return gx, gw, gb, None


@float32_compute
class ConvWeightGrad(Function):
    """gw = d conv(x, w) / dw applied to g, as an op (so the weight gradient has a backward)."""

    @staticmethod
    def forward(ctx, x, g, w_shape, geom):
        ctx.geom = geom
        ctx.save_for_backward(x, g)
        return conv_weight_grad(ctx.xp, x, g, w_shape, geom)

    @staticmethod
    def backward(ctx, grad):
        x, g = ctx.saved_tensors
        geom, need = ctx.geom, ctx.needs_input_grad
        gx = gg = None
        if ctx._tensor_mode:
            if need[0]:
                gx = ConvTranspose.apply(g, grad, None, geom)
            if need[1]:
                gg = Conv.apply(x, grad, None, geom)
        else:
            if grad.dtype.kind == "c":
                x, g = _conj(x), _conj(g)
            if need[0]:
                gx = conv_input_grad(ctx.xp, g, grad, geom)
            if need[1]:
                gg = conv_forward(ctx.xp, x, grad, None, geom)[0]
        return gx, gg, None, None


# ---- unfold / fold (im2col / col2im as ops) ------------------------------------------------
def unfold_forward(xp, x, geom: ConvGeom):
    """(N, C, *S) -> (N, C * prod(kernel), L), PyTorch's ``F.unfold``."""
    cols = im2col(xp, x, geom, batched=True)
    return cols.reshape(x.shape[0], cols.shape[2], -1)


def fold_forward(xp, cols, geom: ConvGeom):
    """(N, C * prod(kernel), L) -> (N, C, *S) summing overlaps, PyTorch's ``F.fold``."""
    n, rows = cols.shape[0], cols.shape[1]
    return col2im(xp, cols.transpose(1, 0, 2), n, rows // math.prod(geom.kernel), geom)


class Unfold(Function):
    @staticmethod
    def forward(ctx, x, geom):
        ctx.geom = geom
        return unfold_forward(ctx.xp, x, geom)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return Fold.apply(grad, ctx.geom), None
        return fold_forward(ctx.xp, grad, ctx.geom), None


class Fold(Function):
    @staticmethod
    def forward(ctx, cols, geom):
        ctx.geom = geom
        return fold_forward(ctx.xp, cols, geom)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return Unfold.apply(grad, ctx.geom), None
        return unfold_forward(ctx.xp, grad, ctx.geom), None
