"""Counting ops without gradients: bincount, histc, histogram, histogramdd."""

from __future__ import annotations

import builtins

import numpy as np

from .. import return_types
from ..backend.device import get_array_module
from ..backend.meta import check_data_independent
from ..tensor import Tensor
from ._util import scalar_type_name


def bincount(input: Tensor, weights: Tensor | None = None, minlength: int = 0) -> Tensor:
    """Counts of each non-negative integer in the 1-D ``input`` (sums of ``weights``)."""
    d = input._data
    check_data_independent("bincount", d)
    xp = get_array_module(d)
    if minlength < 0:
        raise RuntimeError("minlength should be >= 0")
    if d.ndim != 1 or d.dtype.kind not in "biu" or (d.size and bool((d < 0).any())):
        raise RuntimeError("bincount only supports 1-d non-negative integral inputs.")
    if weights is None:
        return Tensor._wrap(xp.bincount(d, minlength=minlength).astype(np.int64))
    w = weights._data
    if w.shape != d.shape:
        raise RuntimeError("weights should be 1-d and have the same length as input")
    # float weights keep their dtype; any other weights count in float64 (as PyTorch)
    dtype = w.dtype if w.dtype.kind == "f" else np.float64
    return Tensor._wrap(xp.bincount(d, weights=w, minlength=minlength).astype(dtype))


def _check_float(input: Tensor, name: str) -> None:
    if input._data.dtype.kind != "f":
        raise NotImplementedError(f"\"{name}\" not implemented for '{scalar_type_name(input)}'")


def histc(input: Tensor, bins: int = 100, min: float = 0, max: float = 0) -> Tensor:
    """A histogram of ``bins`` equal bins over ``[min, max]`` (the data's range when they are
    equal); elements outside the range are ignored."""
    _check_float(input, "histogram_cpu")
    if bins <= 0:
        raise RuntimeError(f"torch.histc(): bins must be > 0, but got {bins} for bins")
    if max < min:
        raise RuntimeError("torch.histc: max must be larger than min")
    d = input._data.reshape(-1)
    xp = get_array_module(d)
    lo, hi = float(min), float(max)
    if lo == hi and d.size:
        finite = d[xp.isfinite(d)]
        if finite.size:
            lo, hi = float(finite.min()), float(finite.max())
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise RuntimeError(f"torch.histc: range of [{lo}, {hi}] is not finite")
    keep = (d >= lo) & (d <= hi)
    x = d[keep]
    dt = d.dtype.type
    pos = ((x - dt(lo)) * dt(bins) / (dt(hi) - dt(lo))).astype(np.int64)
    pos = xp.minimum(pos, bins - 1)  # the right edge belongs to the last bin
    return Tensor._wrap(xp.bincount(pos, minlength=bins).astype(d.dtype))


def _edges(xp, col, bins, rng, dtype):
    """The bin edges of one dimension: given, or ``bins + 1`` evenly spaced over the range."""
    if isinstance(bins, Tensor):
        return bins._data.astype(dtype, copy=False)
    if rng is not None:
        lo, hi = float(rng[0]), float(rng[1])
        if lo > hi:
            raise RuntimeError(
                f"torch.histogramdd(): min should not exceed max, but got min "
                f"{lo} max {hi} for dimension 0"
            )
    elif col.size:
        lo, hi = float(col.min()), float(col.max())
    else:
        lo = hi = 0.0
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    return xp.linspace(lo, hi, int(bins) + 1).astype(dtype)


def _bin_of(xp, col, edges):
    """The bin of each value (the last bin includes its right edge) and which values fall in
    some bin."""
    pos = xp.searchsorted(edges, col, side="right") - 1
    last = edges.shape[0] - 2
    pos = xp.where(col == edges[-1], last, pos)
    return pos, (pos >= 0) & (pos <= last) & ~xp.isnan(col)


def _histogramdd(input, bins, rng, weight, density, name):
    _check_float(input, "histogramdd")
    d = input._data
    xp = get_array_module(d)
    n_dims = d.shape[-1] if d.ndim else 1
    points = d.reshape(-1, n_dims)
    if isinstance(bins, (int, np.integer)) or isinstance(bins, Tensor) and bins._data.ndim == 0:
        bins = [int(bins)] * n_dims
    if len(bins) != n_dims:
        raise RuntimeError(
            f"{name}(): The size of bins must be equal to the innermost dimension of the input."
        )
    if rng is not None and len(rng) != 2 * n_dims:
        raise RuntimeError(f"{name}(): The size of range must be equal to twice the size of bins.")
    edges, flat, keep = [], 0, xp.ones(points.shape[0], dtype=bool)
    for k in range(n_dims):
        col = points[:, k]
        e = _edges(xp, col, bins[k], None if rng is None else rng[2 * k : 2 * k + 2], d.dtype)
        pos, ok = _bin_of(xp, col, e)
        keep &= ok
        flat = flat * (e.shape[0] - 1) + xp.clip(pos, 0, e.shape[0] - 2)
        edges.append(e)
    shape = tuple(e.shape[0] - 1 for e in edges)
    w = None
    if weight is not None:
        if weight._data.dtype != d.dtype:
            raise RuntimeError(
                f"{name}(): if weight tensor is provided, it should have the "
                f"same dtype as the input tensor"
            )
        w = weight._data.reshape(-1)[keep]
    size = int(np.prod(shape))
    hist = xp.bincount(flat[keep], weights=w, minlength=size).astype(d.dtype).reshape(shape)
    if density:
        volume = 1
        for k, e in enumerate(edges):  # the outer product of the bin widths
            widths = xp.diff(e).reshape(tuple(-1 if i == k else 1 for i in range(n_dims)))
            volume = volume * widths
        hist = hist / (hist.sum() * volume)
        hist = hist.astype(d.dtype)
    return Tensor._wrap(hist), [Tensor._wrap(e) for e in edges]


def histogram(
    input: Tensor, bins=100, *, range=None, weight: Tensor | None = None, density: bool = False
):
    """A histogram of all elements: ``bins`` equal bins over ``range`` (the data's range by
    default) or the given 1-D tensor of edges. Returns ``(hist, bin_edges)``."""
    flat = input.reshape(-1, 1)
    b = bins if isinstance(bins, (int, np.integer)) else [bins]
    w = None if weight is None else weight.reshape(-1)
    hist, edges = _histogramdd(flat, b, range, w, density, "torch.histogram")
    return return_types.histogram(hist, edges[0])


def histogramdd(
    input: Tensor, bins=10, *, range=None, weight: Tensor | None = None, density: bool = False
):
    """A D-dimensional histogram of the points in the rows of ``input`` (last dim = D).
    Returns ``(hist, bin_edges)`` with one tensor of edges per dimension."""
    if isinstance(bins, (list, tuple)) and builtins.all(isinstance(b, Tensor) for b in bins):
        bins = list(bins)
    hist, edges = _histogramdd(input, bins, range, weight, density, "torch.histogramdd")
    return return_types.histogramdd(hist, tuple(edges))
