"""Set-like and search ops without gradients: unique, unique_consecutive, isin, searchsorted,
bucketize. They work on raw arrays (``xp`` is numpy or cupy) and return new tensors."""

from __future__ import annotations

import numpy as np

from ..backend.meta import check_data_independent
from ..tensor import Tensor
from ._util import wrap_dim
from .function_free import _xp_of  # (meta arrays: the meta namespace)
from .sorting import argsort_raw


def _raw(x, like=None):
    if isinstance(x, Tensor):
        return x._data
    xp = np if like is None else _xp_of(like)
    return xp.asarray(x)


def _wrap(a, dtype=np.int64) -> Tensor:
    xp = _xp_of(a)
    return Tensor._wrap(xp.asarray(a) if dtype is None else xp.asarray(a, dtype=dtype))


# ---- unique -------------------------------------------------------------------------------
def _runs(xp, rows, new):
    """From the run-start flags of ``rows`` (sorted or not): first row of each run, the run
    number of every row, and the run lengths."""
    run_of = xp.cumsum(new) - 1
    starts = xp.nonzero(new)[0]
    counts = xp.diff(xp.concatenate([starts, xp.asarray([rows.shape[0]], dtype=starts.dtype)]))
    return starts, run_of, counts


def _unique_impl(input: Tensor, sort: bool, return_inverse, return_counts, dim):
    d = input._data
    xp = _xp_of(d)
    if dim is None:
        rows, shape_back = d.reshape(-1, 1), None
    else:
        axis = wrap_dim(dim, d.ndim)
        moved = xp.moveaxis(d, axis, 0)
        rows, shape_back = moved.reshape(moved.shape[0], -1), (axis, moved.shape[1:])
    n = rows.shape[0]
    if sort and n:
        # lexicographic order of the rows (lexsort's last key is the primary one)
        order = argsort_raw(xp, rows[:, 0], 0) if rows.shape[1] == 1 else xp.lexsort(rows.T[::-1])
        rows = rows[order]
    else:
        order = xp.arange(n)
    new = xp.ones(n, dtype=bool)
    if n:
        new[1:] = (rows[1:] != rows[:-1]).any(axis=1)
    starts, run_of, counts = _runs(xp, rows, new)
    out = rows[starts]
    if shape_back is None:
        values = out.reshape(-1)
    else:
        axis, rest = shape_back
        values = xp.moveaxis(out.reshape((out.shape[0],) + rest), 0, axis)
    results = [Tensor._wrap(xp.ascontiguousarray(values))]
    if return_inverse:
        inverse = xp.empty(n, dtype=np.int64)
        inverse[order] = run_of
        results.append(_wrap(inverse.reshape(d.shape) if dim is None else inverse))
    if return_counts:
        results.append(_wrap(counts))
    return results[0] if len(results) == 1 else tuple(results)


def unique(
    input: Tensor,
    sorted: bool = True,
    return_inverse: bool = False,
    return_counts: bool = False,
    dim: int | None = None,
):
    """The distinct elements (``dim``: distinct slices) in ascending order, optionally with
    the index of each input element's value in them and the count of each value."""
    check_data_independent("unique", input._data)
    return _unique_impl(input, True, return_inverse, return_counts, dim)


def unique_consecutive(
    input: Tensor, return_inverse: bool = False, return_counts: bool = False, dim: int | None = None
):
    """Collapses each run of equal consecutive elements (``dim``: slices) to one."""
    check_data_independent("unique_consecutive", input._data)
    return _unique_impl(input, False, return_inverse, return_counts, dim)


def isin(elements, test_elements, *, assume_unique: bool = False, invert: bool = False) -> Tensor:
    """Whether each element of ``elements`` is in ``test_elements`` (either may be a scalar)."""
    like = elements._data if isinstance(elements, Tensor) else test_elements._data
    e, t = _raw(elements, like), _raw(test_elements, like)
    xp = _xp_of(like)
    return _wrap(xp.isin(e, t.reshape(-1), invert=invert), None)


# ---- searching ----------------------------------------------------------------------------
def searchsorted(
    sorted_sequence: Tensor,
    input,
    *,
    out_int32: bool = False,
    right: bool = False,
    side: str | None = None,
    sorter: Tensor | None = None,
) -> Tensor:
    """Indices at which ``input`` would be inserted into ``sorted_sequence`` (its last dim) to
    keep it sorted; ``right``/``side="right"`` puts ties after the equal elements."""
    if side is not None:
        if side not in ("left", "right"):
            raise RuntimeError(
                f"torch.searchsorted(): side can only be 'left' or 'right' but got {side}"
            )
        if right and side == "left":
            raise RuntimeError(
                "torch.searchsorted(): side and right can't be set to "
                "opposites, got side of left while right was True"
            )
        right = side == "right"
    seq = sorted_sequence._data
    xp = _xp_of(seq)
    values = _raw(input, seq)
    if sorter is not None:
        seq = xp.take_along_axis(seq, sorter._data, -1)
    dtype = np.int32 if out_int32 else np.int64
    how = "right" if right else "left"
    if seq.ndim <= 1:
        return _wrap(xp.searchsorted(seq.reshape(-1), values, side=how), dtype)
    if values.ndim == 0 or seq.shape[:-1] != values.shape[:-1]:
        raise RuntimeError(
            "torch.searchsorted(): boundaries tensor should be 1 dimension or the first N-1 "
            "dimensions of boundaries tensor and input value tensor must match, but we got "
            f"boundaries tensor {list(seq.shape)} and input value tensor {list(values.shape)}"
        )
    flat_seq = seq.reshape(-1, seq.shape[-1])
    flat_val = values.reshape(-1, values.shape[-1])
    out = xp.empty(flat_val.shape, dtype=np.int64)
    for i in range(flat_seq.shape[0]):  # one search per row of the batch
        out[i] = xp.searchsorted(flat_seq[i], flat_val[i], side=how)
    return _wrap(out.reshape(values.shape), dtype)


def bucketize(input, boundaries: Tensor, *, out_int32: bool = False, right: bool = False) -> Tensor:
    """The bucket of each element of ``input`` for the 1-D ``boundaries``: ``right=False``
    gives ``boundaries[i-1] < x <= boundaries[i]``, ``right=True`` ``... <= x < ...``."""
    if boundaries._data.ndim != 1:
        raise RuntimeError(
            f"boundaries tensor must be 1 dimension, but got dim({boundaries._data.ndim})"
        )
    return searchsorted(boundaries, input, out_int32=out_int32, right=right)
