"""``ember.sparse.softmax`` / ``log_softmax``: softmax over the stored entries of each slice
along ``dim`` (absent entries count as ``-inf``, so they stay absent), PyTorch's semantics."""

from __future__ import annotations

from ..autograd.function import Function
from ..backend.device import get_array_module
from ._coo import SparseTensor
from ._ops import _linear_keys, _segment_sum, coalesce


class _SegmentSoftmax(Function):
    """Softmax of ``values`` within each group ``groups[i]`` (axis 0 of the values)."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, values, groups, n, log):
        xp = ctx.xp
        top = xp.full((n,) + values.shape[1:], -xp.inf, dtype=values.dtype)
        xp.maximum.at(top, groups, values)
        shifted = values - top[groups]
        total = _segment_sum(xp, groups, xp.exp(shifted), n)
        out = shifted - xp.log(total)[groups] if log else xp.exp(shifted) / total[groups]
        ctx.groups, ctx.n, ctx.log = groups, n, log
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        (out,) = ctx.saved_tensors
        g = ctx.groups
        if ctx.log:
            return grad - xp.exp(out) * _segment_sum(xp, g, grad, ctx.n)[g], None, None, None
        return out * (grad - _segment_sum(xp, g, grad * out, ctx.n)[g]), None, None, None


def sparse_softmax(input: SparseTensor, dim: int, dtype, log: bool) -> SparseTensor:
    if not isinstance(input, SparseTensor):
        raise TypeError(f"sparse.softmax: expected a sparse_coo tensor, got layout {input.layout}")
    s = coalesce(input if dtype is None else input.to(dtype))
    nd, sd = s.dim(), s.sparse_dim()
    if not -nd <= dim < nd:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-nd}, {nd - 1}])")
    dim %= nd
    vals = s._vals
    if dim >= sd:  # a dense dimension: an ordinary softmax of the values along it
        from ..nn import functional as F

        fn = F.log_softmax if log else F.softmax
        return SparseTensor._make(s._idx, fn(vals, dim - sd + 1), s.shape, True)
    idx = s._idx._data
    xp = get_array_module(idx)
    others = [d for d in range(sd) if d != dim]
    keys = _linear_keys(idx[others], tuple(s.shape[d] for d in others))
    uniq, groups = xp.unique(keys, return_inverse=True)
    out = _SegmentSoftmax.apply(vals, groups.reshape(-1), int(uniq.shape[0]), log)
    return SparseTensor._make(s._idx, out, s.shape, True)
