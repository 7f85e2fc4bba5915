"""Shape ops, part two: grids (broadcast_shapes/tensors, meshgrid, cartesian_prod,
combinations) and rearrangements (rot90, repeat_interleave, vander, sum_to_size).
Re-exported by ``shape_ext``; like it, every op here is a composition of differentiable ops.
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
from ._util import wrap_dim
from .indexing import GetItem, index_select
from .shape import (
    cat,
    expand,
    flatten,
    flip,
    reshape,
    transpose,
    unsqueeze,
)


def _tensors(args):
    """``f(a, b)`` and ``f([a, b])`` both mean the tensors a and b."""
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        return list(args[0])
    return list(args)


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
