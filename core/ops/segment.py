"""``torch.segment_reduce``: reduce consecutive runs (segments) of a tensor along one axis.

Segment ``j`` covers ``lengths[j]`` consecutive entries of ``data`` along ``axis`` (or the
range ``offsets[j]:offsets[j + 1]``). PyTorch Geometric's ``segment``/``softmax(ptr=...)``
reduce CSR row ranges with ``torch._segment_reduce`` when torch_scatter is absent.
Semantics follow PyTorch's: ``initial`` takes part in every segment (``mean`` is
``(initial + sum) / length``) and is the value of an empty one; without it an empty segment
holds 0 (sum), 1 (prod), NaN (mean), -inf (max) or inf (min). The gradient of max/min is
shared equally among the entries equal to the result.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..tensor import Tensor
from ._util import wrap_dim
from .function_free import _xp_of

__all__ = ["segment_reduce"]

_REDUCE = {"sum": "sum", "mean": "mean", "prod": "prod"}
_REDUCE.update(max="max", amax="max", min="min", amin="min")
_EMPTY = {"sum": 0.0, "mean": np.nan, "prod": 1.0, "max": -np.inf, "min": np.inf}
_UFUNC = {"sum": "add", "mean": "add", "prod": "multiply", "max": "maximum", "min": "minimum"}


def _segments(xp, values, lens, kind: str):
    """Reduce runs of rows of ``values`` (L, R) with ``kind``'s ufunc: (S, R) over the
    non-empty segments only, plus each row's segment id and the non-empty mask."""
    starts = xp.cumsum(lens) - lens
    nonempty = lens > 0
    rank = xp.repeat(xp.arange(lens.shape[0]), lens)
    ufunc = getattr(xp, _UFUNC[kind])
    if xp is np:
        return ufunc.reduceat(values, starts[nonempty], axis=0), rank, nonempty
    fill = {"add": 0, "multiply": 1, "maximum": -xp.inf, "minimum": xp.inf}[_UFUNC[kind]]
    out = xp.full((lens.shape[0],) + values.shape[1:], fill, dtype=values.dtype)
    ufunc.at(out, rank, values)  # pragma: no cover - GPU (CuPy has no reduceat)
    return out[nonempty], rank, nonempty


class SegmentReduce(Function):
    supports_double_backward = False

    @staticmethod
    def forward(ctx, data, lengths, kind, initial):
        # data (B, L, R), lengths (B, S): one pass per leading index
        xp = ctx.xp
        B, S = lengths.shape
        empty = _EMPTY[kind] if initial is None else initial
        out = xp.full((B, S, data.shape[2]), empty, dtype=data.dtype)
        for b in range(B):
            lens = lengths[b]
            n = int(lens.sum())  # (``unsafe`` lengths may cover less than the axis)
            red, _, nonempty = _segments(xp, data[b][:n], lens, kind)
            if initial is not None:
                red = {"sum": xp.add, "mean": xp.add, "prod": xp.multiply}.get(
                    kind, xp.maximum if kind == "max" else xp.minimum
                )(red, xp.asarray(initial, dtype=data.dtype))
            if kind == "mean":
                red = red / lens[nonempty][:, None].astype(data.dtype)
            out[b][nonempty] = red
        ctx.save_for_backward(data, out)
        ctx.lengths, ctx.kind, ctx.initial = lengths, kind, initial
        return out

    @staticmethod
    def backward(ctx, grad):
        data, out = ctx.saved_tensors
        xp, kind = ctx.xp, ctx.kind
        gx = xp.zeros_like(data)
        for b in range(data.shape[0]):
            lens = ctx.lengths[b]
            rank = xp.repeat(xp.arange(lens.shape[0]), lens)
            g = grad[b][rank]
            n = rank.shape[0]
            d = data[b][:n]
            if kind == "sum":
                gx[b][:n] = g
            elif kind == "mean":
                gx[b][:n] = g / lens[rank][:, None].astype(d.dtype)
            elif kind in ("max", "min"):
                hit = d == out[b][rank]
                ties, _, nonempty = _segments(xp, hit.astype(d.dtype), lens, "sum")
                count = xp.ones((lens.shape[0],) + d.shape[1:], dtype=d.dtype)
                count[nonempty] = ties
                gx[b][:n] = xp.where(hit, g / count[rank], 0)
            else:  # prod: the product of the others, exact where entries are zero
                zero = d == 0
                zeros, _, nonempty = _segments(xp, zero.astype(d.dtype), lens, "sum")
                rest, _, _ = _segments(xp, xp.where(zero, 1, d), lens, "prod")
                if ctx.initial is not None:
                    rest = rest * xp.asarray(ctx.initial, dtype=d.dtype)
                nz = xp.zeros((lens.shape[0],) + d.shape[1:], dtype=d.dtype)
                others = xp.zeros_like(nz)
                nz[nonempty], others[nonempty] = zeros, rest
                with np.errstate(divide="ignore", invalid="ignore"):
                    no_zero = g * out[b][rank] / xp.where(zero, 1, d)
                gx[b][:n] = xp.where(
                    zero,
                    xp.where(nz[rank] == 1, g * others[rank], 0),
                    xp.where(nz[rank] == 0, no_zero, 0),
                )
        return gx, None, None, None


def segment_reduce(
    data: Tensor,
    reduce: str,
    *,
    lengths: Tensor | None = None,
    indices: Tensor | None = None,
    offsets: Tensor | None = None,
    axis: int = 0,
    unsafe: bool = False,
    initial: float | None = None,
) -> Tensor:
    """Reduce segments of ``data`` along ``axis``, as ``torch.segment_reduce``.

    Args:
        data: a floating-point tensor.
        reduce: ``"sum"``, ``"mean"``, ``"prod"``, ``"max"``/``"amax"`` or
            ``"min"``/``"amin"``.
        lengths: segment lengths, shape ``data.shape[:axis] + (S,)``; they must add up to
            ``data.size(axis)`` unless ``unsafe``.
        offsets: instead of ``lengths``, the ``S + 1`` segment boundaries.
        axis: the reduced dimension; it must be the last dimension of ``lengths``.
        initial: a value taking part in every segment (and the value of an empty one).

    Returns:
        ``data`` with ``axis`` resized to the number of segments ``S``.
    """
    kind = _REDUCE.get(reduce)
    if kind is None:
        raise RuntimeError(
            f"reduce argument must be either sum, prod, mean, amax or amin, got {reduce}"
        )
    if indices is not None:
        raise RuntimeError("segment_reduce(): indices based reduction is not supported yet.")
    if data._data.dtype.kind not in "f":
        raise RuntimeError(f"segment_reduce(): not implemented for dtype {data.dtype}")
    if (lengths is None) == (offsets is None):
        raise RuntimeError("segment_reduce(): give exactly one of lengths or offsets")
    axis = wrap_dim(axis, data.dim())
    bounds = lengths if lengths is not None else offsets
    raw = bounds._data if isinstance(bounds, Tensor) else np.asarray(bounds)
    if raw.ndim != axis + 1:
        raise RuntimeError(
            f"segment_reduce(): Expected axis to be the last dimension of lengths but got {axis}."
        )
    if tuple(raw.shape[:-1]) != tuple(data.shape[:axis]):
        raise RuntimeError(
            f"segment_reduce(): {'lengths' if lengths is not None else 'offsets'} of shape "
            f"{tuple(raw.shape)} does not match data's leading dims {tuple(data.shape[:axis])}"
        )
    xp = _xp_of(data._data)
    raw = xp.asarray(raw).astype(np.int64)
    lens = raw if lengths is not None else xp.diff(raw, axis=-1)
    if lens.size and bool((lens < 0).any()):
        raise RuntimeError("segment_reduce(): lengths contains negative value!")
    L = data.shape[axis]
    if not unsafe and bool((lens.sum(axis=-1) != L).any()):
        raise RuntimeError(
            "segment_reduce(): Expected all rows of lengths along axis to sum to "
            "data.size(lengths.dim()-1) when !unsafe."
        )
    lead, rest = tuple(data.shape[:axis]), tuple(data.shape[axis + 1 :])
    B = int(np.prod(lead)) if lead else 1
    R = int(np.prod(rest)) if rest else 1
    S = lens.shape[-1]
    flat = data.reshape(B, L, R)
    init = None if initial is None else float(initial)
    out = SegmentReduce.apply(flat, lens.reshape(B, S), kind, init)
    return out.reshape(lead + (S,) + rest)


def _segment_reduce(data: Tensor, reduce: str, **kwargs) -> Tensor:
    """``torch._segment_reduce``: the same op under its private name."""
    return segment_reduce(data, reduce, **kwargs)


def _convert_indices_from_coo_to_csr(
    input: Tensor, size: int, *, out_int32: bool = False
) -> Tensor:
    """``torch._convert_indices_from_coo_to_csr``: sorted row ids -> ``size + 1`` row pointers
    (``out[i]`` counts the ids below ``i``)."""
    if input.dim() != 1:
        raise RuntimeError(
            f"input is supposed to be a vector, but got {input.dim()} dimensional tensor."
        )
    xp = _xp_of(input._data)
    ptr = xp.searchsorted(input._data, xp.arange(int(size) + 1), side="left")
    return Tensor._wrap(ptr.astype(np.int32 if out_int32 else np.int64))


def _convert_indices_from_csr_to_coo(
    crow_indices: Tensor, col_indices: Tensor, *, out_int32: bool = False, transpose: bool = False
) -> Tensor:
    """``torch._convert_indices_from_csr_to_coo``: row pointers and column ids -> a
    ``(2, nnz)`` index tensor (rows first; columns first when ``transpose``)."""
    if crow_indices.dim() != 1 or col_indices.dim() != 1:
        raise RuntimeError("crow_indices and col_indices are supposed to be vectors")
    xp = _xp_of(crow_indices._data)
    crow = crow_indices._data.astype(np.int64)
    rows = xp.repeat(xp.arange(crow.shape[0] - 1), xp.diff(crow))
    pair = (col_indices._data, rows) if transpose else (rows, col_indices._data)
    return Tensor._wrap(xp.stack(pair).astype(np.int32 if out_int32 else np.int64))
