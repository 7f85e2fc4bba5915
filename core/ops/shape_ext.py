"""Shape ops beyond the basics: joins and splits (column/row/dstack, h/v/dsplit), grids
(meshgrid, cartesian_prod, combinations), select/slice scatters, rot90, repeat_interleave,
block_diag, vander, sum_to_size and the in-place view methods (``squeeze_``, ``t_``...).

All are compositions of differentiable ops (views, getitem, IndexPut, cat), so their gradients
and double backward come from those.
"""

from __future__ import annotations

import builtins
import itertools
import warnings

import numpy as np

from ..backend.device import get_array_module
from ..backend.meta import MetaArray
from ..tensor import Size, Tensor
from ._util import broadcast_shapes as _broadcast_shapes
from ._util import result_dtype, wrap_dim
from .indexing import GetItem, IndexPut, index_select
from .shape import (
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
from .shape_ext_views import _inplace_view


def _tensors(args):
    """``f(a, b)`` and ``f([a, b])`` both mean the tensors a and b."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return list(args[0])
    return list(args)


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


# ---- grids --------------------------------------------------------------------------------
def broadcast_shapes(*shapes) -> Size:
    """The shape that the given shapes broadcast to, as :class:`Size`.

    Raises:
        RuntimeError: the shapes do not broadcast.
    """
    return Size(_broadcast_shapes(*[(s,) if isinstance(s, int) else tuple(s) for s in shapes]))


def broadcast_tensors(*tensors):
    """The tensors broadcast to their common shape."""
    ts = _tensors(tensors)
    shape = _broadcast_shapes(*[t._data.shape for t in ts])
    return tuple(expand(t, shape) for t in ts)


def meshgrid(*tensors, indexing: str | None = None):
    """Coordinate grids: output i varies along dim i ('ij'), or with the first two dims
    swapped ('xy', NumPy's default)."""
    ts = _tensors(tensors)
    if indexing is None:
        warnings.warn(
            "torch.meshgrid: in an upcoming release, it will be required to pass the "
            "indexing argument.",
            UserWarning,
            stacklevel=2,
        )
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise RuntimeError(
            f'torch.meshgrid: indexing must be one of "xy" or "ij", but received: {indexing}'
        )
    for t in ts:
        if t._data.ndim > 1:
            raise RuntimeError(
                f"torch.meshgrid: Expected 0D or 1D tensor in the tensor list but got: {t}"
            )
    sizes = [t._data.size for t in ts]
    pos = list(range(len(ts)))
    if indexing == "xy" and len(ts) >= 2:
        pos[0], pos[1] = 1, 0
        sizes[0], sizes[1] = sizes[1], sizes[0]
    out = []
    for t, p in zip(ts, pos):
        view = [1] * len(ts)
        view[p] = -1
        out.append(expand(t.reshape(view), tuple(sizes)))
    return tuple(out)


def cartesian_prod(*tensors) -> Tensor:
    """The Cartesian product of 1-D tensors, one row per combination (as ``itertools.product``)."""
    ts = _tensors(tensors)
    if len(ts) == 1:
        return ts[0]
    grids = meshgrid(*ts, indexing="ij")
    from .shape import stack

    return stack([flatten(g) for g in grids], 1)


def combinations(input: Tensor, r: int = 2, with_replacement: bool = False) -> Tensor:
    """The length-``r`` combinations of a 1-D tensor's elements, one per row."""
    if input._data.ndim != 1:
        raise RuntimeError(f"Expect a 1D vector, but got shape {list(input._data.shape)}")
    if r < 0:
        raise RuntimeError(f"Expect a non-negative number, but got {r}")
    if r == 0:
        return GetItem.apply(input, (slice(0, 0),))
    gen = itertools.combinations_with_replacement if with_replacement else itertools.combinations
    idx = np.array(list(gen(range(input._data.shape[0]), r)), dtype=np.int64).reshape(-1, r)
    xp = get_array_module(input._data)
    return GetItem.apply(input, (xp.asarray(idx),))


# ---- rearrangements -----------------------------------------------------------------------
def rot90(input: Tensor, k: int = 1, dims=(0, 1)) -> Tensor:
    """Rotate by 90 degrees ``k`` times in the plane ``dims`` (from the first towards the
    second)."""
    dims = list(dims)
    nd = input._data.ndim
    if len(dims) != 2:
        raise RuntimeError(f"expected total rotation dims == 2, but got dims = {len(dims)}")
    if nd < 2:
        raise RuntimeError(f"expected total dims >= 2, but got total dims = {nd}")
    d0, d1 = wrap_dim(dims[0], nd), wrap_dim(dims[1], nd)
    if d0 == d1:
        raise RuntimeError(
            f"expected rotation dims to be different, but got dim0 = {d0} and dim1 = {d1}"
        )
    k %= 4
    if k == 1:
        return transpose(flip(input, [d1]), d0, d1)
    if k == 2:
        return flip(input, [d0, d1])
    if k == 3:
        return flip(transpose(input, d0, d1), [d1])
    return input.clone()


def repeat_interleave(
    input: Tensor, repeats=None, dim: int | None = None, *, output_size: int | None = None
) -> Tensor:
    """Repeat each element (or slice along ``dim``) ``repeats`` times, next to each other."""
    xp = get_array_module(input._data)
    r = input._data if repeats is None else getattr(repeats, "_data", None)
    if type(r) is MetaArray:  # (torch's error: the output's size is in the values)
        raise RuntimeError("cannot repeat_interleave a meta tensor without output_size")
    if repeats is None:  # repeat_interleave(repeats): the indices, each repeated
        reps = input._data
        if reps.ndim > 1:
            raise RuntimeError("repeat_interleave only accept 1D vector as repeat")
        return Tensor._wrap(xp.repeat(xp.arange(reps.shape[0]), _host_list(reps)))
    if dim is None:
        input, d = reshape(input, -1), 0
    else:
        d = wrap_dim(dim, input._data.ndim)
    n = input._data.shape[d] if input._data.ndim else 1
    if isinstance(repeats, Tensor):
        r = repeats._data
        if r.ndim > 1:
            raise RuntimeError("repeat_interleave only accept 1D vector as repeat")
        if r.ndim == 1 and r.shape[0] not in (1, n):
            raise RuntimeError(
                f"repeats must have the same size as input along dim, but got "
                f"repeats.size(0) = {r.shape[0]} and input.size({d}) = {n}"
            )
        reps = _host_list(r.reshape(-1)) if r.size != 1 else int(r.reshape(-1)[0])
    else:
        reps = int(repeats)
    if (
        isinstance(reps, int)
        and reps < 0
        or not isinstance(reps, int)
        and builtins.any(v < 0 for v in reps)
    ):
        raise RuntimeError("repeats can not be negative")
    index = xp.repeat(xp.arange(n), reps)
    if output_size is not None and index.shape[0] != output_size:
        raise RuntimeError("allocated size does not match required size")
    if input._data.ndim == 0:
        input = reshape(input, 1)
    return index_select(input, d, Tensor._wrap(index))


def _host_list(a):
    return [int(v) for v in (a.get() if hasattr(a, "get") else a).tolist()]


def vander(x: Tensor, N: int | None = None, increasing: bool = False) -> Tensor:
    """Columns are powers of ``x`` (decreasing unless ``increasing``): x^(N-1) ... x^0."""
    if x._data.ndim != 1:
        raise RuntimeError("x must be a one-dimensional tensor.")
    n = x._data.shape[0]
    N = n if N is None else int(N)
    if N < 0:
        raise RuntimeError("N must be non-negative.")
    if x._data.dtype.kind in "biu":
        from ..backend.dtype import int64

        x = x.to(int64)
    ones = Tensor._wrap(
        get_array_module(x._data).ones((n, builtins.min(N, 1)), dtype=x._data.dtype)
    )
    cols = [ones]
    if N > 1:
        cols.append(expand(unsqueeze(x, 1), (n, N - 1)).cumprod(1))
    out = cat(cols, 1)
    return out if increasing else flip(out, [1])


def sum_to_size(input: Tensor, *size) -> Tensor:
    """Sum ``input`` down to ``size`` (which it must be expandable from)."""
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    size = tuple(int(s) for s in size)
    shape = input._data.shape
    ok = len(size) <= len(shape) and builtins.all(
        s == n or s == 1 for s, n in zip(size, shape[len(shape) - len(size) :])
    )
    if not ok:
        raise RuntimeError(f"size {{{list(size)}}} is not expandable to size {{{list(shape)}}}.")
    lead = len(shape) - len(size)
    out = input.sum(tuple(range(lead))) if lead else input
    axes = tuple(i for i, s in enumerate(size) if s == 1 and out._data.shape[i] != 1)
    return out.sum(axes, keepdim=True) if axes else out


# ---- in place: shape changes (PyTorch's squeeze_, t_...) -----------------------------------
squeeze_ = _inplace_view(squeeze, "squeeze_")
unsqueeze_ = _inplace_view(unsqueeze, "unsqueeze_")
transpose_ = swapaxes_ = swapdims_ = _inplace_view(transpose, "transpose_")


def _t(input):
    return input.t()


t_ = _inplace_view(_t, "t_")
