"""Fused neural-network ops with analytic gradients: linear, softmax / log_softmax, dropout,
GELU (the cross-entropy family is in ``loss_ops``).

Forward passes work on raw arrays with ``ctx.xp`` and reuse their temporaries in place; they
are the hot path of every model, so each one is a single Function rather than a chain of ops.
"""

from __future__ import annotations

import math

import numpy as np

from ..autograd.function import Function
from ..backend.mkl_gemm import active as mkl_active
from ..backend.mkl_gemm import matmul as mm
from . import _numba_linear
from ._lowp import float32_compute
from .act_kernels import compiled, flat_compiled, gelu_exact_f32, rows_compiled, times
from .softmax_kernels import (
    log_softmax_last,
    log_softmax_last_probs,
    log_softmax_probs_backward,
    softmax_last,
    softmax_last_backward,
)


# ---- linear ---------------------------------------------------------------------------------
@float32_compute
class Linear(Function):
    """``x @ w.T + b``: one matmul plus an in-place bias add; no copies of the weight."""

    @staticmethod
    def forward(ctx, x, w, b):
        nx, nw, _ = ctx.needs_input_grad
        ctx.save_for_backward(x if nw else None, w if nx else None)
        x2 = x.reshape(-1, x.shape[-1]) if x.ndim > 2 else x
        if _swappable(x2, w, b):  # few rows, long reduction: (w @ x.T).T, bias in the copy
            out = _numba_linear.swapped_product(x2, w, b)
            return out.reshape(x.shape[:-1] + (w.shape[0],)) if x.ndim > 2 else out
        # one 2-D GEMM over all leading dims (a stacked matmul would loop over them)
        out = mm(x2, w.T)
        if x.ndim > 2:
            out = out.reshape(x.shape[:-1] + (w.shape[0],))
        if b is not None:
            out += b
        return out

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        nx, nw, nb = ctx.needs_input_grad
        if getattr(grad, "_data", grad).dtype.kind == "c":  # conjugate Wirtinger, as PyTorch
            x = x.conj() if x is not None else None
            w = w.conj() if w is not None else None
        gx = gw = gb = None
        g2 = grad.reshape(-1, grad.shape[-1]) if grad.ndim > 2 else grad
        if nx:
            gx = mm(g2, w)
            if grad.ndim > 2:
                gx = gx.reshape(grad.shape[:-1] + (w.shape[1],))
        if nw or nb:
            if g2.ndim == 1:
                g2 = g2.reshape(1, -1)
            out = ctx.grad_out or (None, None, None)  # preallocated (DDP bucket) or None
            if nw:
                x2 = x.reshape(-1, x.shape[-1])
                gw = _matmul_into(out[1], ctx.xp, g2.T, x2)
            if nb:  # a compiled column sum, bit for bit NumPy's
                dest = out[2] if out[2] is not None and out[2].dtype == g2.dtype else None
                gb = _numba_linear.bias_grad(g2, dest)
        return gx, gw, gb


def _swappable(x2, w, b) -> bool:
    """Whether ``Linear.forward`` takes ``_numba_linear.swapped_product`` (NumPy's OpenBLAS
    only: an active MKL keeps its own path)."""
    return (
        type(x2) is np.ndarray
        and type(w) is np.ndarray
        and x2.ndim == 2
        and w.ndim == 2
        and x2.dtype == w.dtype
        and x2.dtype.char in "fd"
        and (b is None or (type(b) is np.ndarray and b.dtype == x2.dtype))
        and _numba_linear.use_swapped(x2, w)
        and not mkl_active()
    )


def _matmul_into(dest, xp, a, b):
    """``a @ b``, written into ``dest`` when one is given with the result's dtype."""
    if dest is not None and dest.dtype == np.result_type(a.dtype, b.dtype):
        return mm(a, b, out=dest) if xp is np else xp.matmul(a, b, out=dest)
    return mm(a, b)


# ---- softmax family -------------------------------------------------------------------------
@float32_compute
class Softmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        xp = ctx.xp
        ctx.dim = dim
        if _last_dim_rows(xp, x, dim):
            kern = compiled(xp, x)
            if kern is not None:  # one pass per row, a vectorised exp
                out = rows_compiled(kern, "softmax_forward", x)
                ctx.save_for_backward(out)
                return out
            out = softmax_last(x.reshape(-1, x.shape[-1])).reshape(x.shape)
            ctx.save_for_backward(out)
            return out
        out = x - x.max(axis=dim, keepdims=True)
        xp.exp(out, out=out)
        out /= out.sum(axis=dim, keepdims=True)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        if not ctx._tensor_mode and _last_dim_rows(ctx.xp, out, ctx.dim):
            kern = compiled(ctx.xp, out) if grad.dtype == out.dtype else None
            if kern is not None:
                return rows_compiled(kern, "softmax_backward", grad, out), None
            d = out.shape[-1]
            return softmax_last_backward(grad.reshape(-1, d), out.reshape(-1, d)).reshape(
                out.shape
            ), None
        # out * (grad - sum(grad * out)): two full passes after the reduction
        s = ctx.xp.sum(grad * out, axis=ctx.dim, keepdims=True)
        return (grad - s) * out, None


@float32_compute
class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x, dim):
        xp = ctx.xp
        if _last_dim_rows(xp, x, dim):
            ctx.dim = dim
            kern = compiled(xp, x)
            if kern is not None:  # the backward recomputes exp(out) (vectorised): nothing else kept
                out = rows_compiled(kern, "log_softmax_forward", x)
                ctx.save_for_backward(out, None)
                return out
            x2 = x.reshape(-1, x.shape[-1])
            if not ctx.needs_input_grad[0]:
                return log_softmax_last(x2).reshape(x.shape)
            # the softmax of the forward's exp pass is saved too: the first-order backward
            # then makes no exp pass (512x10000: ~20 ms less); double backward uses ``out``
            out, p = log_softmax_last_probs(x2)
            out = out.reshape(x.shape)
            ctx.save_for_backward(out, p)
            return out
        shifted = x - x.max(axis=dim, keepdims=True)
        lse = xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
        shifted -= lse
        ctx.dim = dim
        ctx.save_for_backward(shifted)
        return shifted

    @staticmethod
    def backward(ctx, grad):
        out = ctx.saved_tensors[0]
        xp = ctx.xp
        if not ctx._tensor_mode and _last_dim_rows(xp, out, ctx.dim):
            kern = compiled(xp, out) if grad.dtype == out.dtype else None
            if kern is not None:
                return rows_compiled(kern, "log_softmax_backward", grad, out), None
            d = out.shape[-1]
            return log_softmax_probs_backward(grad.reshape(-1, d), ctx.saved_array(1)).reshape(
                out.shape
            ), None
        return grad - xp.exp(out) * xp.sum(grad, axis=ctx.dim, keepdims=True), None


def _last_dim_rows(xp, x, dim) -> bool:
    """Whether the blocked NumPy row kernels apply: softmax over the last dim of a
    non-empty float array on the CPU."""
    return (
        xp is np and x.ndim > 0 and dim in (-1, x.ndim - 1) and x.size > 0 and x.dtype.kind == "f"
    )


def _log_softmax_rows(xp, x):
    """log_softmax over axis 1 of a 2-D array (a fresh array)."""
    out = x - x.max(axis=1, keepdims=True)
    tmp = xp.exp(out)
    out -= xp.log(tmp.sum(axis=1, keepdims=True))
    return out


# ---- dropout --------------------------------------------------------------------------------
class MaskMul(Function):
    """``x * mask`` with a constant mask (dropout's kept-and-rescaled mask)."""

    @staticmethod
    def forward(ctx, x, mask):
        ctx.save_for_backward(mask)
        return x * mask

    @staticmethod
    def backward(ctx, grad):
        (mask,) = ctx.saved_tensors
        return grad * mask, None


class MaskAffine(Function):
    """``x * a + b`` with constant arrays (alpha dropout)."""

    @staticmethod
    def forward(ctx, x, a, b):
        ctx.save_for_backward(a)
        out = x * a
        out += b
        return out

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * a, None, None


# ---- GELU -----------------------------------------------------------------------------------
_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


# Numerical Recipes' erfc (fractional error < 1.2e-7 everywhere): float32 at a third of the
# cost of scipy's double-precision erf, with relative accuracy in the tails.
_ERFC_COEFS = (
    0.17087277,
    -0.82215223,
    1.48851587,
    -1.13520398,
    0.27886807,
    -0.18628806,
    0.09678418,
    0.37409196,
    1.00002368,
    -1.26551223,
)


def _normal_cdf(xp, x):
    """Phi(x) = 0.5 * erfc(-x / sqrt(2)), as a fresh array of x's dtype."""
    if xp is not np or x.dtype == np.float64:
        if xp is np:
            from scipy.special import ndtr
        else:  # pragma: no cover - GPU
            from cupyx.scipy.special import ndtr
        return ndtr(x).astype(x.dtype, copy=False)
    dt = x.dtype.type
    z = np.abs(x) * dt(_INV_SQRT_2)
    t = z * dt(0.5)
    t += dt(1)
    np.reciprocal(t, out=t)
    poly = t * dt(_ERFC_COEFS[0])
    for c in _ERFC_COEFS[1:-1]:
        poly += dt(c)
        poly *= t
    poly += dt(_ERFC_COEFS[-1])
    np.square(z, out=z)
    poly -= z
    np.exp(poly, out=poly)
    poly *= t  # erfc(|x| / sqrt 2)
    poly *= dt(0.5)  # Phi(-|x|)
    # Phi(x) = 0.5 + sign(x) (0.5 - Phi(-|x|)) (copysign: np.where is slow on random masks)
    np.subtract(dt(0.5), poly, out=poly)
    np.copysign(poly, x, out=poly)
    poly += dt(0.5)
    return poly


@float32_compute
class Gelu(Function):
    """GELU, exact (``x * Phi(x)``) or with the tanh approximation."""

    @staticmethod
    def forward(ctx, x, approximate):
        xp = ctx.xp
        ctx.approximate = approximate
        kern = compiled(xp, x)
        if kern is not None:  # one pass; the derivative made alongside, backward one product
            name = "gelu_tanh" if approximate == "tanh" else "gelu"
            out, der = flat_compiled(kern, name, x, ctx.needs_input_grad[0])
            ctx.save_for_backward(x, der)
            ctx.fused = True
            return out
        if approximate == "tanh":
            inner = x * x
            inner *= 0.044715
            inner += 1
            inner *= x
            inner *= _SQRT_2_PI
            t = xp.tanh(inner, out=inner)
            ctx.save_for_backward(x, t)
            out = t + 1
            out *= x
            out *= 0.5
            return out
        if xp is np and x.dtype == np.float32:
            # blocked: one exp for output and derivative; backward is grad * derivative
            out, der = gelu_exact_f32(x, ctx.needs_input_grad[0])
            ctx.save_for_backward(x, der)
            ctx.approximate = "derivative"
            return out
        cdf = _normal_cdf(xp, x)
        ctx.save_for_backward(x, cdf)
        return x * cdf

    @staticmethod
    def backward(ctx, grad):
        x, aux = ctx.saved_tensors
        if ctx._tensor_mode:  # double backward: the derivative as an op of x
            approx = "none" if ctx.approximate == "derivative" else ctx.approximate
            return grad * GeluDerivative.apply(x, approx), None
        if ctx.approximate == "derivative" or getattr(ctx, "fused", False):  # aux is GELU'(x)
            return times(grad, aux), None  # split over threads when large
        d = _gelu_derivative(ctx.xp, x, ctx.approximate, aux)
        d *= grad
        return d, None


def _gelu_derivative(xp, x, approximate, aux):
    """GELU'(x) as a fresh array; ``aux`` is tanh(u) (tanh form) or Phi(x) (exact)."""
    if approximate == "tanh":
        d = x * x
        d *= 3 * 0.044715
        d += 1
        d *= _SQRT_2_PI
        d *= x
        d *= 1 - aux * aux
        d += 1 + aux
        d *= 0.5
        return d
    d = x * x
    d *= -0.5
    xp.exp(d, out=d)
    d *= x
    d *= _INV_SQRT_2PI
    d += aux  # Phi(x) + x * pdf(x)
    return d


class GeluDerivative(Function):
    """GELU'(x) as an op, so that GELU's gradient can be differentiated again; its own
    gradient is GELU''(x): ``pdf(x) (2 - x^2)`` exact, and for the tanh form, with
    ``u = k (x + a x^3)`` and ``t = tanh(u)``, ``(1 - t^2) (u' + x (u'' - 2 t u'^2) / 2)``."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, x, approximate):
        xp = ctx.xp
        ctx.approximate = approximate
        ctx.save_for_backward(x)
        if approximate == "tanh":
            t = xp.tanh(_SQRT_2_PI * (x + 0.044715 * x * x * x))
            return _gelu_derivative(xp, x, approximate, t)
        return _gelu_derivative(xp, x, approximate, _normal_cdf(xp, x))

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        xp = ctx.xp
        if ctx.approximate == "tanh":
            x2 = x * x
            t = xp.tanh(_SQRT_2_PI * (x + 0.044715 * x2 * x))
            du = _SQRT_2_PI * (1 + 3 * 0.044715 * x2)
            d2u = _SQRT_2_PI * 6 * 0.044715 * x
            dd = (1 - t * t) * (du + 0.5 * x * (d2u - 2 * t * du * du))
        else:
            dd = xp.exp(-0.5 * x * x) * _INV_SQRT_2PI * (2 - x * x)
        return grad * dd.astype(x.dtype, copy=False), None
