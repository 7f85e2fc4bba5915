"""Shape ops beyond the basics: joins and splits (column/row/dstack, h/v/dsplit), select/slice
scatters, block_diag and the in-place view methods (``squeeze_``, ``t_``...). The grids
(meshgrid, cartesian_prod, combinations, broadcast_*) and rearrangements (rot90,
repeat_interleave, vander, sum_to_size) live in ``shape_ext_grids`` and are re-exported here.

All are compositions of differentiable ops (views, getitem, IndexPut, cat), so their gradients
and double backward come from those.
"""

from __future__ import annotations

import builtins
import itertools  # noqa: F401
import warnings  # noqa: F401

import numpy as np

from ..backend.device import get_array_module  # noqa: F401
from ..backend.meta import MetaArray  # noqa: F401
from ..tensor import Size, Tensor  # noqa: F401
from ._util import broadcast_shapes as _broadcast_shapes  # noqa: F401
from ._util import result_dtype, wrap_dim
from .indexing import GetItem, IndexPut, index_select  # noqa: F401
from .shape import (  # noqa: F401
    cat,
    chunk,
    expand,
    flatten,
    flip,
    hstack,
    narrow,
    pad,
    reshape,
    split,
    squeeze,
    transpose,
    unsqueeze,
    vstack,
)
from .shape_ext_grids import (  # noqa: F401  (re-exported: every name stays importable here)
    _host_list,
    _tensors,
    broadcast_shapes,
    broadcast_tensors,
    cartesian_prod,
    combinations,
    meshgrid,
    repeat_interleave,
    rot90,
    sum_to_size,
    vander,
)
from .shape_ext_views import _inplace_view


# ---- select and slice scatters ------------------------------------------------------------
def _select_index(input, dim, index):
    shape = input._data.shape
    if not shape:
        raise IndexError("select() cannot be applied to a 0-dim tensor.")
    d = wrap_dim(dim, len(shape))
    n = shape[d]
    if not -n <= index < n:
        raise IndexError(
            f"select(): index {index} out of range for tensor of size "
            f"{list(shape)} at dimension {d}"
        )
    # the trailing Ellipsis keeps a 0-d result a view (NumPy returns a scalar copy otherwise)
    return (slice(None),) * d + (int(index) % n, Ellipsis)


def select(input: Tensor, dim: int, index: int) -> Tensor:
    """The slice at ``index`` along ``dim`` (a view without that dimension)."""
    return GetItem.apply(input, _select_index(input, dim, index))


def select_scatter(input: Tensor, src: Tensor, dim: int, index: int) -> Tensor:
    """A copy of ``input`` with ``src`` written at ``index`` along ``dim``."""
    idx = _select_index(input, dim, index)
    want = input._data[idx].shape
    if tuple(src._data.shape) != want:
        raise RuntimeError(
            f"expected src to have a size equal to the slice of self. src size = "
            f"{list(src._data.shape)}, slice size = {list(want)}"
        )
    return IndexPut.apply(input, idx, src.to(input.dtype), False)


def slice_scatter(
    input: Tensor,
    src: Tensor,
    dim: int = 0,
    start: int | None = None,
    end: int | None = None,
    step: int = 1,
) -> Tensor:
    """A copy of ``input`` with ``src`` written into ``input[..., start:end:step, ...]``."""
    d = wrap_dim(dim, input._data.ndim)
    idx = (slice(None),) * d + (slice(start, end, step),)
    want = input._data[idx].shape
    if tuple(src._data.shape) != want:
        raise RuntimeError(
            f"expected src to have a size equal to the slice of self. src size = "
            f"{list(src._data.shape)}, slice size = {list(want)}"
        )
    return IndexPut.apply(input, idx, src.to(input.dtype), False)


# ---- joins and splits ---------------------------------------------------------------------
def atleast_1d(*tensors):
    """Each tensor with at least one dimension (0-d tensors become shape ``(1,)``)."""
    ts = _tensors(tensors)
    out = tuple(t.reshape(1) if t._data.ndim == 0 else t for t in ts)
    return out[0] if len(tensors) == 1 and isinstance(tensors[0], Tensor) else out


def atleast_2d(*tensors):
    """Each tensor with at least two dimensions (new dimensions in front)."""
    ts = _tensors(tensors)
    out = tuple(
        t.reshape(1, 1) if t._data.ndim == 0 else unsqueeze(t, 0) if t._data.ndim == 1 else t
        for t in ts
    )
    return out[0] if len(tensors) == 1 and isinstance(tensors[0], Tensor) else out


def atleast_3d(*tensors):
    """Each tensor with at least three dimensions."""

    def up(t):
        nd = t._data.ndim
        if nd == 0:
            return t.reshape(1, 1, 1)
        if nd == 1:
            return t.reshape(1, -1, 1)
        return unsqueeze(t, -1) if nd == 2 else t

    out = tuple(up(t) for t in _tensors(tensors))
    return out[0] if len(tensors) == 1 and isinstance(tensors[0], Tensor) else out


def column_stack(tensors) -> Tensor:
    """Stack 0/1-D tensors as columns (and 2-D ones as they are) side by side."""
    return hstack([t.reshape(-1, 1) if t._data.ndim <= 1 else t for t in tensors])


def dstack(tensors) -> Tensor:
    """The tensors joined along the third dimension (depth), after :func:`atleast_3d`."""
    return cat(atleast_3d(list(tensors)), 2)


def row_stack(tensors) -> Tensor:
    """The same as :func:`vstack`."""
    return vstack(tensors)


def _split_indices(input, indices, d):
    """NumPy's array_split at ``indices`` (out-of-order or out-of-range bounds give empties)."""
    n = input._data.shape[d]
    bounds = (
        [0]
        + [builtins.min(builtins.max(int(i) + (n if i < 0 else 0), 0), n) for i in indices]
        + [n]
    )
    return tuple(
        GetItem.apply(input, (slice(None),) * d + (slice(a, builtins.max(a, b)),))
        for a, b in zip(bounds[:-1], bounds[1:])
    )


def _directional_split(name, input, sections, d, min_dims):
    nd = input._data.ndim
    if nd < min_dims:
        raise RuntimeError(
            f"torch.{name} requires a tensor with at least {min_dims} dimension, "
            f"but got a tensor with {nd} dimensions!"
        )
    if isinstance(sections, (int, np.integer)):
        n = input._data.shape[d]
        if sections == 0 or n % sections:
            raise RuntimeError(
                f"torch.{name} attempted to split along dimension {d}, but the "
                f"size of the dimension {n} is not divisible by the split_size "
                f"{sections}!"
            )
        return (
            tuple(split(input, n // sections, d))
            if n
            else _split_indices(input, [0] * (sections - 1), d)
        )
    return _split_indices(input, list(sections), d)


def hsplit(input: Tensor, indices_or_sections):
    """``input`` split along dimension 1 (0 for 1-D tensors).

    Args:
        input (Tensor): the tensor to split.
        indices_or_sections: an int (that many equal parts; it must divide the size) or a list of
            indices to split before.
    """
    return _directional_split(
        "hsplit", input, indices_or_sections, 0 if input._data.ndim == 1 else 1, 1
    )


def vsplit(input: Tensor, indices_or_sections):
    """``input`` split along dimension 0.

    Args:
        input (Tensor): the tensor to split.
        indices_or_sections: an int (that many equal parts; it must divide the size) or a list of
            indices to split before.
    """
    return _directional_split("vsplit", input, indices_or_sections, 0, 2)


def dsplit(input: Tensor, indices_or_sections):
    """``input`` split along dimension 2.

    Args:
        input (Tensor): the tensor to split.
        indices_or_sections: an int (that many equal parts; it must divide the size) or a list of
            indices to split before.
    """
    return _directional_split("dsplit", input, indices_or_sections, 2, 3)


def split_with_sizes(input: Tensor, split_sizes, dim: int = 0):
    """``input`` split along ``dim`` into parts of ``split_sizes`` (they must sum to its size)."""
    return split(input, list(split_sizes), dim)


def unsafe_split(input: Tensor, split_size: int, dim: int = 0):
    """The same as :func:`split` (ember has no unsafe variant)."""
    return split(input, split_size, dim)


def unsafe_split_with_sizes(input: Tensor, split_sizes, dim: int = 0):
    """The same as :func:`split_with_sizes` (ember has no unsafe variant)."""
    return split(input, list(split_sizes), dim)


def unsafe_chunk(input: Tensor, chunks: int, dim: int = 0):
    """The same as :func:`chunk` (ember has no unsafe variant)."""
    return chunk(input, chunks, dim)


def narrow_copy(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    """A copy of :func:`narrow`'s result."""
    return narrow(input, dim, start, length).clone()


def ravel(input: Tensor) -> Tensor:
    """The elements of ``input`` as a 1-D tensor (a view where possible)."""
    return reshape(input, -1)


def block_diag(*tensors) -> Tensor:
    """The tensors (0, 1 or 2-D) as the blocks of a block-diagonal matrix."""
    mats = []
    for i, t in enumerate(tensors):
        nd = t._data.ndim
        if nd > 2:
            raise RuntimeError(
                f"torch.block_diag: Input tensors must have 2 or fewer "
                f"dimensions. Input {i} has {nd} dimensions"
            )
        mats.append(t.reshape(1, -1) if nd < 2 else t)
    if not mats:
        from ..creation import zeros

        return zeros(1, 0)
    rt = result_dtype(*mats)
    mats = [m.to(rt) for m in mats]
    total = builtins.sum(m._data.shape[1] for m in mats)
    rows, left = [], 0
    for m in mats:
        w = m._data.shape[1]
        rows.append(pad(m, (left, total - left - w)))
        left += w
    return cat(rows, 0)


# ---- in place: shape changes (PyTorch's squeeze_, t_...) -----------------------------------
squeeze_ = _inplace_view(squeeze, "squeeze_")
unsqueeze_ = _inplace_view(unsqueeze, "unsqueeze_")
transpose_ = swapaxes_ = swapdims_ = _inplace_view(transpose, "transpose_")


def _t(input):
    return input.t()


t_ = _inplace_view(_t, "t_")
