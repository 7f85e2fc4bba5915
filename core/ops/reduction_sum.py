"""Sum-like reductions with ``dim``/``keepdim`` (numpy's ``axis``/``keepdims`` accepted as
aliases): sum, mean, prod, logsumexp, and the cumulative scans cumsum/cumprod.
"""

from __future__ import annotations

import numpy as _np

from ..autograd.function import Function
from ..backend.device import get_array_module
from ..backend.dtype import get_default_dtype, int64
from ._lowp import LOW_PRECISION, float32_compute
from ._util import norm_dims, scalar_type_name, wrap_dim
from .convert import to_dtype_op

_add_reduce = _np.add.reduce


def _expand_back(grad, shape, axes, keepdim, xp):
    """Reshape a reduced gradient so it broadcasts against the input of shape ``shape``."""
    if axes is None:
        return grad.reshape((1,) * len(shape))
    if not keepdim:
        grad = grad.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))
    return grad


def _broadcast(g, shape, xp):
    """``xp.broadcast_to(g, shape)`` for ``g`` of ``len(shape)`` dims: a read-only view.

    NumPy's ``broadcast_to`` is Python around an ``nditer`` (~3 us, more than a small sum's
    whole backward); a contiguous NumPy ``g`` gets the same zero-stride view built directly.
    """
    if type(g) is not _np.ndarray or not g.flags.c_contiguous or g.ndim != len(shape):
        return xp.broadcast_to(g, shape)
    strides = []
    for n, m, st in zip(g.shape, shape, g.strides):
        if n == m:
            strides.append(st)
        elif n == 1:
            strides.append(0)
        else:
            return xp.broadcast_to(g, shape)  # (its error)
    out = _np.ndarray(shape, g.dtype, g, 0, tuple(strides))
    out.flags.writeable = False
    return out


class Sum(Function):
    @staticmethod
    def forward(ctx, x, axes, keepdim):
        ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        if x.dtype in LOW_PRECISION:
            # accumulate in float32 and round once, as PyTorch's CPU kernels do: ml_dtypes'
            # bfloat16 sum adds in bfloat16 one by one and stalls at 256 (256 + 1 == 256)
            return x.sum(axis=axes, keepdims=keepdim, dtype="float32").astype(x.dtype)
        if type(x) is _np.ndarray:  # ndarray.sum is this call behind a Python wrapper (~1 us)
            return _add_reduce(x, axis=axes, keepdims=keepdim)
        return x.sum(axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        g = _expand_back(grad, ctx.shape, ctx.axes, ctx.keepdim, xp)
        return _broadcast(g, ctx.shape, xp), None, None


class Mean(Function):
    @staticmethod
    def forward(ctx, x, axes, keepdim):
        ctx.shape, ctx.axes, ctx.keepdim = x.shape, axes, keepdim
        n = 1
        for a in range(x.ndim) if axes is None else axes:
            n *= x.shape[a]
        ctx.n = n
        if x.dtype in LOW_PRECISION:  # float32 accumulation, as in Sum
            return x.mean(axis=axes, keepdims=keepdim, dtype="float32").astype(x.dtype)
        return x.mean(axis=axes, keepdims=keepdim)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        g = _expand_back(grad, ctx.shape, ctx.axes, ctx.keepdim, xp)
        return _broadcast(g / ctx.n, ctx.shape, xp), None, None


class Prod(Function):
    @staticmethod
    def forward(ctx, x, axis, keepdim):
        out = x.prod(axis=axis, keepdims=keepdim)
        ctx.save_for_backward(x, out)
        ctx.axis, ctx.keepdim = axis, keepdim
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        xp = ctx.xp
        axes = None if ctx.axis is None else (ctx.axis,)
        g = _expand_back(grad, x.shape, axes, ctx.keepdim, xp)
        o = _expand_back(out, x.shape, axes, ctx.keepdim, xp)
        # product of the others; exact also where x has zeros (computed by exclusive cumprods)
        raw = x._data if ctx._tensor_mode else x
        if not bool((raw == 0).any()):
            return g * o / x, None, None
        ax = ctx.axis
        flat = x.reshape(-1) if ax is None else x
        a = 0 if ax is None else ax
        n = flat.shape[a]
        rxp = get_array_module(raw)
        head, body = rxp.arange(1), rxp.arange(n - 1)  # (index arrays: tensor_xp takes them)
        ones = xp.ones_like(xp.take(flat, head, axis=a))
        left = xp.cumprod(xp.concatenate([ones, xp.take(flat, body, axis=a)], axis=a), axis=a)
        rev = xp.flip(flat, axis=a)
        right = xp.flip(
            xp.cumprod(xp.concatenate([ones, xp.take(rev, body, axis=a)], axis=a), axis=a), axis=a
        )
        others = (left * right).reshape(x.shape)
        return g * others, None, None


@float32_compute  # float16/bfloat16 accumulate in float32, as in torch
class LogSumExp(Function):
    @staticmethod
    def forward(ctx, x, axes, keepdim):
        xp = ctx.xp
        m = x.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        out = xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True)) + m
        if not keepdim:
            out = out.reshape(
                tuple(n for i, n in enumerate(x.shape) if axes is not None and i not in axes)
            )
        # save the returned array itself: double backward then sees it as the output
        ctx.save_for_backward(x, out)
        ctx.axes, ctx.keepdim = axes, keepdim
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        xp = ctx.xp
        g = _expand_back(grad, x.shape, ctx.axes, ctx.keepdim, xp)
        o = _expand_back(out, x.shape, ctx.axes, ctx.keepdim, xp)
        return g * xp.exp(x - o), None, None


@float32_compute
class CumSum(Function):
    @staticmethod
    def forward(ctx, x, axis):
        ctx.axis = axis
        return ctx.xp.cumsum(x, axis=axis)

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        return xp.flip(xp.cumsum(xp.flip(grad, axis=ctx.axis), axis=ctx.axis), axis=ctx.axis), None


@float32_compute
class CumProd(Function):
    @staticmethod
    def forward(ctx, x, axis):
        out = ctx.xp.cumprod(x, axis=axis)
        ctx.save_for_backward(x, out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        xp, a = ctx.xp, ctx.axis

        def rcumsum(v):  # sum over j >= i along the axis
            return xp.flip(xp.cumsum(xp.flip(v, axis=a), axis=a), axis=a)

        # d x_i = sum_{j>=i} grad_j * prod_{k<=j, k!=i} x_k. Before the first zero of a slice
        # that is sum_{j>=i} grad_j * out_j / x_i; at the first zero, the same sum over the
        # cumprod with that zero replaced by 1; after it, 0 (the zero is among the factors).
        raw = x._data if ctx._tensor_mode else x
        rxp = get_array_module(raw)
        zeros_so_far = rxp.cumsum(raw == 0, axis=a)
        if not bool(zeros_so_far.any()):
            return rcumsum(grad * out) / x, None
        if ctx._tensor_mode:  # double backward: a form whose own derivatives are exact too
            return _cumprod_grad_scan(xp, rxp, x, grad, a), None
        before = zeros_so_far == 0
        first = (zeros_so_far == 1) & (raw == 0)
        safe_x = xp.where(before, x, 1)
        bridged = xp.cumprod(xp.where(first, 1, x), axis=a)
        return (
            xp.where(before, rcumsum(grad * out) / safe_x, 0)
            + xp.where(first, rcumsum(grad * bridged), 0)
        ), None

    supports_double_backward = True


def _cumprod_grad_scan(xp, rxp, x, grad, a):
    """cumprod's input gradient without division: ``(prod_{k<i} x_k) * S_i`` with the reverse
    scan ``S_i = grad_i + x_{i+1} * S_{i+1}``. One step per element of the axis, so it serves
    double backward only, where the masked closed form would have wrong derivatives."""
    n = x.shape[a]

    def at(v, i):
        return xp.take(v, rxp.arange(i, i + 1), axis=a)

    exclusive = xp.cumprod(
        xp.concatenate([xp.ones_like(at(x, 0)), xp.take(x, rxp.arange(n - 1), axis=a)], axis=a),
        axis=a,
    )
    scan = [at(grad, n - 1)]
    for i in range(n - 2, -1, -1):
        scan.append(at(grad, i) + at(x, i + 1) * scan[-1])
    return exclusive * xp.concatenate(scan[::-1], axis=a)


# ---- public functions ---------------------------------------------------------------------
def _dims_kw(dim, keepdim, kwargs):
    """Accept numpy's ``axis``/``keepdims`` spellings, as PyTorch does."""
    dim = kwargs.pop("axis", dim)
    keepdim = kwargs.pop("keepdims", keepdim)
    if kwargs:
        raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
    return dim, keepdim


def _sum_dtype(input, dtype):
    if dtype is not None:
        return to_dtype_op(input, dtype)
    if input._data.dtype.kind in "biu":  # integer sums accumulate in int64, as PyTorch
        return to_dtype_op(input, int64)
    return input


def sum(input, dim=None, keepdim=False, *, dtype=None, **kwargs):
    """The sum of the elements of ``input`` over ``dim``.

    Integer and bool inputs sum in ``int64``, as PyTorch.

    Args:
        input (Tensor): the input.
        dim (int or tuple of ints, optional): the dimension(s) to reduce; None reduces all.
        keepdim: keep the reduced dimensions with size 1.
        dtype: cast the input to this dtype first.
    """
    if kwargs:
        dim, keepdim = _dims_kw(dim, keepdim, kwargs)
    # (inline for the common call, ``t.sum()`` on a float tensor: three helper calls less)
    x = input if dtype is None and input._data.dtype.kind not in "biu" else _sum_dtype(input, dtype)
    return Sum.apply(x, None if dim is None else norm_dims(dim, x._data.ndim), bool(keepdim))


def mean(input, dim=None, keepdim=False, *, dtype=None, **kwargs):
    """The mean of the elements of ``input`` over ``dim`` (floating or complex input).

    Args:
        input (Tensor): the input.
        dim (int or tuple of ints, optional): the dimension(s) to reduce; None reduces all.
        keepdim: keep the reduced dimensions with size 1.
        dtype: cast the input to this dtype first.
    """
    dim, keepdim = _dims_kw(dim, keepdim, kwargs)
    x = input if dtype is None else to_dtype_op(input, dtype)
    # a quantized tensor (integer codes) goes on: its mean is taken on the codes, keeping its
    # scale and zero point (ember._quantized_ops), as torch's quantized mean
    if x._data.dtype.kind not in "fcV" and getattr(x, "_qdtype", None) is None:
        raise RuntimeError(
            "mean(): could not infer output dtype. Input dtype must be either a floating point "
            f"or complex dtype. Got: {scalar_type_name(x)}"
        )
    return Mean.apply(x, norm_dims(dim, x._data.ndim), bool(keepdim))


def prod(input, dim=None, keepdim=False, *, dtype=None):
    """The product of the elements of ``input`` over ``dim`` (one int, or all elements).

    Args:
        input (Tensor): the input.
        dim (int, optional): the dimension to reduce; None reduces all.
        keepdim: keep the reduced dimension with size 1.
        dtype: cast the input to this dtype first.
    """
    x = _sum_dtype(input, dtype)
    axis = None if dim is None else wrap_dim(dim, x._data.ndim)
    if x._data.ndim == 0:  # dim 0 of a 0-d tensor: the product is the element itself
        axis, keepdim = None, False
    return Prod.apply(x, axis, keepdim)


def logsumexp(input, dim, keepdim=False):
    """The logarithm of the sum of exponentials over ``dim``, ln(sum(e^x)), computed stably
    (the maximum is subtracted first).

    Args:
        input (Tensor): the input.
        dim: the dimension or dimensions to reduce.
        keepdim: keep the reduced dimensions with size 1.
    """
    x = input if input._data.dtype.kind in "fcV" else to_dtype_op(input, get_default_dtype())
    return LogSumExp.apply(x, norm_dims(dim, x._data.ndim), keepdim)


def _scan(cls, input, dim, dtype):
    x = _sum_dtype(input, dtype)
    axis = wrap_dim(dim, x._data.ndim)
    if x._data.ndim == 0:  # scan the 1-element view, then back to 0-d
        from .shape import reshape

        return reshape(cls.apply(reshape(x, (1,)), 0), ())
    return cls.apply(x, axis)


def cumsum(input, dim, *, dtype=None):
    """The cumulative sum of ``input`` along ``dim``; ``dtype`` casts the input first."""
    return _scan(CumSum, input, dim, dtype)


def cumprod(input, dim, *, dtype=None):
    """The cumulative product of ``input`` along ``dim``; ``dtype`` casts the input first."""
    return _scan(CumProd, input, dim, dtype)
