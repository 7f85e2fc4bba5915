"""Variance and standard-deviation reductions (``correction`` or ``unbiased``), and
var_mean/std_mean.
"""

from __future__ import annotations

import builtins

from ..autograd.function import Function
from ._lowp import float32_compute
from ._util import norm_dims
from .reduction_sum import _expand_back, mean


@float32_compute  # float16/bfloat16 accumulate in float32, as in torch
class Var(Function):
    @staticmethod
    def forward(ctx, x, axes, correction, keepdim):
        mean = x.mean(axis=axes, keepdims=True)
        n = x.size if axes is None else 1
        if axes is not None:
            for a in axes:
                n *= x.shape[a]
        ctx.save_for_backward(x, mean)
        ctx.axes, ctx.keepdim, ctx.n = axes, keepdim, n
        ctx.denom = builtins.max(n - correction, 0)
        return x.var(axis=axes, ddof=correction, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        x, mean = ctx.saved_tensors
        xp = ctx.xp
        if ctx._tensor_mode:  # the mean depends on x too: recompute it inside the graph
            mean = xp.sum(x, axis=ctx.axes, keepdims=True) / ctx.n
        g = _expand_back(grad, x.shape, ctx.axes, ctx.keepdim, xp)
        return g * 2 * (x - mean) / ctx.denom, None, None, None


# ---- public functions ---------------------------------------------------------------------
def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """The variance of ``input`` over ``dim``.

    Args:
        input (Tensor): the input.
        dim (int or tuple of ints, optional): the dimension(s) to reduce; None reduces all.
        unbiased: the older spelling of ``correction`` (True is 1, False is 0).
        keepdim: keep the reduced dimensions with size 1.
        correction: the difference between the number of samples and the divisor (default 1,
            Bessel's correction).
    """
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    x = input
    return Var.apply(x, norm_dims(dim, x._data.ndim), correction, keepdim)


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """The standard deviation of ``input`` over ``dim``.

    Args:
        input (Tensor): the input.
        dim (int or tuple of ints, optional): the dimension(s) to reduce; None reduces all.
        unbiased: the older spelling of ``correction`` (True is 1, False is 0).
        keepdim: keep the reduced dimensions with size 1.
        correction: the difference between the number of samples and the divisor (default 1,
            Bessel's correction).
    """
    from .elementwise import sqrt

    return sqrt(var(input, dim, unbiased, keepdim, correction=correction))


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """The variance and the mean over ``dim``, a tuple ``(var, mean)``.

    Args:
        input (Tensor): the input.
        dim (int or tuple of ints, optional): the dimension(s) to reduce; None reduces all.
        unbiased: the older spelling of ``correction`` (True is 1, False is 0).
        keepdim: keep the reduced dimensions with size 1.
        correction: the difference between the number of samples and the divisor (default 1,
            Bessel's correction).
    """
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    """The standard deviation and the mean over ``dim``, a tuple ``(std, mean)``.

    Args:
        input (Tensor): the input.
        dim (int or tuple of ints, optional): the dimension(s) to reduce; None reduces all.
        unbiased: the older spelling of ``correction`` (True is 1, False is 0).
        keepdim: keep the reduced dimensions with size 1.
        correction: the difference between the number of samples and the divisor (default 1,
            Bessel's correction).
    """
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)
