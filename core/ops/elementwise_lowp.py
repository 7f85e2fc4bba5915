"""float16/bfloat16 ``add(alpha=)``, ``sub(alpha=)``, ``addcmul`` and ``addcdiv`` rounded as
torch's CPU kernels round them.

torch computes these in float32 with one fused multiply-add and rounds the result to the
tensor's dtype once; ember's composites (``mul`` then ``add``) rounded after every step, which
moves a third of bfloat16 results by one ulp: the optimizer updates of bfloat16 parameters and
state (``p.add_(g, alpha=-lr)``, ``exp_avg_sq.addcmul_(g, g, value=1 - beta2)``) drift apart.
float64 stands in for the fused multiply-add. Only CPU NumPy arrays of one low-precision dtype
take these paths (``use_fused_low``); gradients are torch's formulas in the input dtype.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from ._lowp import is_low_cpu, opmath_scalar

__all__ = ["use_fused_low", "AddScaledLow", "AddcmulLow", "AddcdivLow"]

_f32, _f64 = np.float32, np.float64


def use_fused_low(*tensors) -> bool:
    """Whether all ``tensors`` are CPU tensors of one float16/bfloat16 dtype."""
    if not all(isinstance(t, Tensor) for t in tensors) or not is_low_cpu(tensors[0]):
        return False
    dt = tensors[0]._data.dtype
    return all(t._data.dtype == dt for t in tensors[1:])


def _round(out: np.ndarray, dtype) -> np.ndarray:
    return out.astype(_f32).astype(dtype)


class AddScaledLow(Function):
    """``a + alpha * b``: torch rounds ``alpha`` to the dtype (add's scalar rule), then fuses."""

    @staticmethod
    def forward(ctx, a, b, alpha):
        ctx.alpha = alpha
        al = float(np.asarray(alpha, dtype=a.dtype).astype(_f64))
        return _round(a.astype(_f64) + al * b.astype(_f64), a.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, grad * opmath_scalar(ctx.alpha), None


class AddcmulLow(Function):
    """``a + value * b * c``: ``value * b`` in float32, then one fused multiply-add."""

    @staticmethod
    def forward(ctx, a, b, c, value):
        ctx.save_for_backward(b, c)
        ctx.value = value
        vb = (_f32(value) * b.astype(_f32)).astype(_f64)
        return _round(a.astype(_f64) + vb * c.astype(_f64), a.dtype)

    @staticmethod
    def backward(ctx, grad):
        b, c = ctx.saved_tensors
        v = opmath_scalar(ctx.value)
        nb, nc = ctx.needs_input_grad[1:3]
        # torch's formulas: grad * (tensor2 * value), the product rounded first
        return grad, grad * (c * v) if nb else None, grad * (b * v) if nc else None, None


class AddcdivLow(Function):
    """``a + value * b / c``: ``value * b`` and the quotient in float32, then one addition."""

    @staticmethod
    def forward(ctx, a, b, c, value):
        ctx.save_for_backward(b, c)
        ctx.value = value
        q = (_f32(value) * b.astype(_f32)) / c.astype(_f32)
        return _round(a.astype(_f64) + q.astype(_f64), a.dtype)

    @staticmethod
    def backward(ctx, grad):
        b, c = ctx.saved_tensors
        v = opmath_scalar(ctx.value)
        nb, nc = ctx.needs_input_grad[1:3]
        # torch's formulas: grad * (value / tensor2), with value rounded to the dtype there
        # (a scalar divided by a tensor), and -grad * (value * tensor1 / (tensor2 * tensor2))
        gb = grad * (np.asarray(ctx.value, dtype=c.dtype) / c) if nb else None
        gc = -grad * ((b * v) / (c * c)) if nc else None
        return grad, gb, gc, None
