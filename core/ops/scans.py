"""Cumulative scans with selection or log-space sums: cummax, cummin, logcumsumexp.

``cummax``/``cummin`` find the running extremum's index on raw arrays and gather the values
(gradient to the selected elements, as PyTorch). Scans whose NumPy ufunc has no CuPy
``accumulate`` use a log-step (Hillis-Steele) scan: ``log2(n)`` vectorised steps.
"""

from __future__ import annotations

import numpy as np

from .. import return_types
from ..autograd.function import Function
from ..backend.dtype import get_default_dtype
from ..tensor import Tensor
from ._util import wrap_dim
from .convert import to_dtype_op
from .function_free import _xp_of  # (meta arrays: the meta namespace)
from .shape import reshape
from .sorting import _gather, _index_tensor


def _running_extreme_index(xp, d, axis: int, is_max: bool):
    """Index of the running max (min) along ``axis``: NaN beats every number, and of equal
    values the later one wins (PyTorch's choice)."""
    v = xp.moveaxis(d, axis, -1)
    n = v.shape[-1]
    val = v.copy()
    idx = xp.broadcast_to(xp.arange(n, dtype=np.int64), v.shape).copy()
    is_float = d.dtype.kind in "fc"
    step = 1
    while step < n:
        pv, pi, cv, ci = val[..., :-step], idx[..., :-step], val[..., step:], idx[..., step:]
        better = pv > cv if is_max else pv < cv
        if is_float:
            better = (better & ~xp.isnan(cv)) | (xp.isnan(pv) & ~xp.isnan(cv))
        new_val, new_idx = xp.where(better, pv, cv), xp.where(better, pi, ci)
        val[..., step:], idx[..., step:] = new_val, new_idx
        step *= 2
    return xp.moveaxis(idx, -1, axis)


def _cum_extreme(input: Tensor, dim: int, is_max: bool):
    axis = wrap_dim(dim, input._data.ndim)
    x = reshape(input, (1,)) if input._data.ndim == 0 else input
    if input._data.ndim == 0:
        axis = 0
    idx = _running_extreme_index(_xp_of(x._data), x._data, axis, is_max)
    values, indices = _gather(x, axis, idx), _index_tensor(idx)
    if input._data.ndim == 0:
        values, indices = reshape(values, ()), reshape(indices, ())
    return values, indices


def cummax(input: Tensor, dim: int):
    """The running maximum along ``dim`` and the index where it was found."""
    return return_types.cummax(*_cum_extreme(input, dim, True))


def cummin(input: Tensor, dim: int):
    """The running minimum along ``dim`` and the index where it was found."""
    return return_types.cummin(*_cum_extreme(input, dim, False))


def _logaddexp_scan(xp, d, axis: int):
    if xp is np:
        return np.logaddexp.accumulate(d, axis=axis)
    out = xp.moveaxis(d, axis, -1).copy()
    step = 1
    while step < out.shape[-1]:
        out[..., step:] = xp.logaddexp(out[..., step:], out[..., :-step])
        step *= 2
    return xp.moveaxis(out, -1, axis)


class LogCumSumExp(Function):
    @staticmethod
    def forward(ctx, x, axis):
        with np.errstate(invalid="ignore"):
            out = _logaddexp_scan(ctx.xp, x, axis)
        ctx.save_for_backward(x, out)
        ctx.axis = axis
        return out

    @staticmethod
    def backward(ctx, grad):
        # d x_j = sum_{i >= j} g_i exp(x_j - out_i), summed in log space for each sign of g
        # so that nothing overflows: exp(x_j + rlcse(log g_i - out_i)).
        x, out = ctx.saved_tensors
        xp, a = ctx.xp, ctx.axis
        if ctx._tensor_mode:
            # double backward: one scale per slice, the total (the largest of ``out``), so the
            # graph has no -inf in it (whose derivatives would be NaN)
            raw_out = out._data
            if raw_out.shape[a] == 0:
                return grad, None
            total = Tensor._wrap(raw_out[(slice(None),) * a + (slice(-1, None),)])
            scaled = xp.flip(xp.cumsum(xp.flip(grad * xp.exp(total - out), a), a), a)
            return xp.exp(x - total) * scaled, None

        def rlcse(v):
            return xp.flip(_logaddexp_scan(xp, xp.flip(v, a), a), a)

        raw = grad
        rxp = _xp_of(raw)
        result = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            for sign in (1, -1):
                keep = rxp.asarray(sign * raw > 0)
                if not bool(keep.any()):
                    continue
                logg = xp.where(keep, xp.log(xp.where(keep, sign * grad, 1)), -np.inf)
                result = result + sign * xp.exp(x + rlcse(logg - out))
        if isinstance(result, int):
            result = xp.zeros_like(x)
        return result, None


def logcumsumexp(input: Tensor, dim: int) -> Tensor:
    """``log(cumsum(exp(input), dim))`` computed without overflow."""
    x = input if input._data.dtype.kind in "fcV" else to_dtype_op(input, get_default_dtype())
    axis = wrap_dim(dim, x._data.ndim)
    if x._data.ndim == 0:
        return reshape(LogCumSumExp.apply(reshape(x, (1,)), 0), ())
    return LogCumSumExp.apply(x, axis)
