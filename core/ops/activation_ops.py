"""Activation functions as single Functions (forward and analytic backward side by side).

Backward formulas use operators and ``ctx.xp`` functions only, so they also run on
tensors and support double backward. Gradients at kinks follow PyTorch's conventions.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend.threads import num_threads
from .act_kernels import compiled, flat_compiled, saved_grad, silu_f32, times

SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


# NumPy's ``where`` with a data-dependent mask costs ~10x a multiplication here (branchy
# loops), so the formulas select branches arithmetically with 0/1 masks instead.


def _sigmoid(xp, x):
    """1 / (1 + exp(-x)) without overflow (works on arrays and, in backward, on tensors)."""
    return 1 / (1 + xp.exp(-x))  # full relative precision in the negative tail, as torch


def _softplus_raw(xp, x):
    """log(1 + exp(x)), computed without overflow."""
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


class Hardtanh(Function):
    @staticmethod
    def forward(ctx, x, lo, hi):
        ctx.save_for_backward(x)
        ctx.bounds = (lo, hi)
        return ctx.xp.clip(x, lo, hi).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        # a select (0., not -0., for a negative gradient), and 0 at a NaN input: torch's
        # vectorised loop (its scalar tail, the last < 16 float32, passes the gradient there;
        # tests/test_s24_leftovers.py)
        return ctx.xp.where((x > lo) & (x < hi), grad, 0), None, None


class LeakyRelu(Function):
    @staticmethod
    def forward(ctx, x, slope):
        ctx.save_for_backward(x)
        ctx.slope = slope
        if 0 <= slope <= 1:
            return ctx.xp.maximum(x, x * slope)
        pos = x * (x > 0)
        return pos + (x - pos) * slope

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        # mask the gradient itself rather than build `mask * (1 - slope) + slope`: a bool
        # tensor times a Python float is float32 (create_graph runs this on tensors), which
        # rounded a float64 gradient's slope to float32; here each element is `grad` or
        # `grad * slope`, as in torch
        pos = grad * (x > 0)
        return pos + (grad - pos) * ctx.slope, None


class Elu(Function):
    """``scale * (x if x > 0 else alpha * (exp(x / input_scale... ) - 1))``: ELU, SELU, CELU."""

    @staticmethod
    def forward(ctx, x, alpha, scale, input_scale):
        xp = ctx.xp
        out = xp.expm1(xp.minimum(x, 0) * input_scale)  # 0 where x > 0
        out *= alpha * scale
        out += xp.maximum(x, 0) * scale
        out = out.astype(x.dtype, copy=False)
        ctx.save_for_backward(x, out)
        ctx.coef = (alpha, scale, input_scale)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        alpha, scale, input_scale = ctx.coef
        # for x <= 0: d/dx = input_scale * (out + alpha * scale)
        pos = x > 0
        # min(out, 0) keeps the x > 0 branch finite (out may be inf there)
        coef = pos * scale + (~pos) * ((ctx.xp.minimum(out, 0) + alpha * scale) * input_scale)
        return grad * coef, None, None, None


# From this many elements SiLU at 2+ threads saves x, not the derivative: the step is bound by
# memory traffic there (one core saturates it: a 4M float32 multiply 1.39 ms on one thread,
# 1.51 on two), and the derivative array costs a write and a read of its size
SILU_RECOMPUTE_MIN = 1 << 20


class Silu(Function):
    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        kern = compiled(xp, x)
        if kern is not None and x.size >= SILU_RECOMPUTE_MIN and num_threads() > 1:
            # memory-bound at 2+ threads: the backward recomputes the derivative from x
            out = flat_compiled(kern, "silu", x, False)[0]
            ctx.save_for_backward(x, None)
            return out
        if kern is not None:  # one pass; the derivative made alongside
            out, der = flat_compiled(kern, "silu", x, ctx.needs_input_grad[0])
            ctx.save_for_backward(x, der)
            return out
        if xp is np and x.dtype == np.float32:
            # blocked: output and derivative from one exp; backward is grad * derivative
            out, der = silu_f32(x, ctx.needs_input_grad[0])
            ctx.save_for_backward(x, der)
            return out
        ctx.save_for_backward(x, None)
        return x * _sigmoid(xp, x).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        x, der = ctx.saved_tensors
        if der is not None and not ctx._tensor_mode:
            return times(grad, der)  # split over threads when large
        if not ctx._tensor_mode and type(x) is np.ndarray:
            kern = compiled(ctx.xp, x)
            res = saved_grad(kern, "silu_backward", grad, x) if kern is not None else None
            if res is not None:
                return res
        s = _sigmoid(ctx.xp, x)  # recomputed from x so that double backward sees it
        return grad * (s * (1 + x * (1 - s)))


class Mish(Function):
    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        tsp = xp.tanh(_softplus_raw(xp, x)).astype(x.dtype, copy=False)
        ctx.save_for_backward(x, tsp)
        return x * tsp

    @staticmethod
    def backward(ctx, grad):
        x, tsp = ctx.saved_tensors
        xp = ctx.xp
        if ctx._tensor_mode:  # double backward: tanh(softplus(x)) must be a function of x
            tsp = xp.tanh(_softplus_raw(xp, x))
        sig = _sigmoid(xp, x)
        return grad * (tsp + x * sig * (1 - tsp * tsp))


class Hardsigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (ctx.xp.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x > -3) & (x < 3)) / 6


class Hardswish(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x * ctx.xp.clip(x + 3, 0, 6) / 6).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        # 0 below -3, x/3 + 1/2 on [-3, 3], 1 above 3 (PyTorch's convention at the kinks)
        xp = ctx.xp
        mid = xp.maximum(xp.minimum(x, 3), -3) / 3 + 0.5  # finite for any x
        coef = ((x >= -3) & (x <= 3)) * mid + (x > 3)
        return grad * coef


class Softplus(Function):
    @staticmethod
    def forward(ctx, x, beta, threshold):
        xp = ctx.xp
        bx = x * beta
        out = xp.where(bx > threshold, x, _softplus_raw(xp, bx) / beta).astype(x.dtype, copy=False)
        ctx.save_for_backward(x)
        ctx.coef = (beta, threshold)
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        beta, threshold = ctx.coef
        xp = ctx.xp
        bx = x * beta
        sig = _sigmoid(xp, bx)
        return grad * (sig + (bx > threshold) * (1 - sig)), None, None


class Softsign(Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x / (1 + ctx.xp.abs(x))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        d = 1 + ctx.xp.abs(x)
        return grad / (d * d)


class Threshold(Function):
    @staticmethod
    def forward(ctx, x, threshold, value):
        ctx.save_for_backward(x)
        ctx.threshold = threshold
        # torch's ``x <= threshold ? value : x``: NaN stays NaN, and passes its gradient
        return ctx.xp.where(x <= threshold, value, x).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return ctx.xp.where(x <= ctx.threshold, 0, grad), None, None


class Hardshrink(Function):
    @staticmethod
    def forward(ctx, x, lambd):
        ctx.save_for_backward(x)
        ctx.lambd = lambd
        return x * ((x > lambd) | (x < -lambd))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x > ctx.lambd) | (x < -ctx.lambd)), None


class Softshrink(Function):
    @staticmethod
    def forward(ctx, x, lambd):
        ctx.save_for_backward(x)
        ctx.lambd = lambd
        return x - ctx.xp.clip(x, -lambd, lambd)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * ((x > ctx.lambd) | (x < -ctx.lambd)), None


class LogSigmoid(Function):
    @staticmethod
    def forward(ctx, x):
        xp = ctx.xp
        ctx.save_for_backward(x)
        return (xp.minimum(x, 0) - xp.log1p(xp.exp(-xp.abs(x)))).astype(x.dtype, copy=False)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * _sigmoid(ctx.xp, -x)
