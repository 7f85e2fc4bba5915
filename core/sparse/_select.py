"""Sparse COO ``select`` / integer indexing / iteration and ``stack``, PyTorch's rules.

sentence-transformers' ``SparseEncoder.encode`` splits each batch of sparse embeddings into
rows (``list.extend(batch)``, iteration over dim 0) and joins the rows back with
``torch.stack``; its ``decode`` indexes a row (``embeddings[0]``). Both stay sparse in PyTorch:
a row of a sparse COO tensor is a sparse tensor without that dimension, and stacking sparse
tensors gives a sparse tensor with a new leading sparse dimension.
"""

from __future__ import annotations

import numpy as np

from ..backend.device import get_array_module
from ._coo import SparseTensor, _unsupported


def select(self: SparseTensor, dim: int, index: int) -> SparseTensor:
    """The slice at ``index`` along sparse dimension ``dim``: a sparse tensor of one dimension
    less (PyTorch's ``Tensor.select`` on a sparse COO tensor); differentiable w.r.t. the values."""
    from ..ops import index_select
    from ..tensor import Tensor

    nd = self.dim()
    if not -nd <= dim < nd:
        raise IndexError(f"select(): dimension {dim} out of range for a {nd}-d sparse tensor")
    dim %= nd
    if dim >= self.sparse_dim():
        raise _unsupported(f"select() along dense dimension {dim}")
    size = self.shape[dim]
    if not -size <= index < size:
        raise IndexError(
            f"select(): index {index} out of range for tensor of size {tuple(self.shape)} "
            f"at dimension {dim}"
        )
    index %= size
    idx = self._idx
    xp = get_array_module(idx._data)
    keep = xp.nonzero(idx._data[dim] == index)[0]
    rows = [r for r in range(idx.shape[0]) if r != dim]
    new_idx = Tensor._wrap(idx._data[rows][:, keep]) if rows else None
    vals = index_select(self._vals, 0, Tensor._wrap(keep.astype(np.int64)))
    shape = tuple(self.shape[:dim]) + tuple(self.shape[dim + 1 :])
    if new_idx is None:  # the last sparse dimension selected: a dense tensor, as in PyTorch
        return vals.sum(0)
    # rows with equal leading index keep their order: a coalesced tensor stays coalesced
    return SparseTensor._make(new_idx, vals, shape, self.is_coalesced() and dim == 0)


def stack(tensors, dim: int = 0) -> SparseTensor:
    """Sparse tensors of one shape joined along a new sparse dimension ``dim`` (at most their
    number of sparse dimensions); differentiable w.r.t. every input's values."""
    from ..ops import cat
    from ..tensor import Tensor

    tensors = list(tensors)
    if not all(isinstance(t, SparseTensor) for t in tensors):
        raise _unsupported("stack() of sparse and dense tensors")
    first = tensors[0]
    for i, t in enumerate(tensors[1:], 1):
        if tuple(t.shape) != tuple(first.shape) or t.sparse_dim() != first.sparse_dim():
            raise RuntimeError(
                f"stack expects each tensor to be equal size, but got {list(first.shape)} at "
                f"entry 0 and {list(t.shape)} at entry {i}"
            )
    if not 0 <= dim <= first.sparse_dim():
        raise _unsupported(f"stack() along dimension {dim} (past the sparse dimensions)")
    xp = get_array_module(first._idx._data)
    parts = []
    for k, t in enumerate(tensors):
        idx = t._idx._data
        row = xp.full((1, idx.shape[1]), k, dtype=np.int64)
        parts.append(xp.concatenate([idx[:dim], row, idx[dim:]], axis=0))
    idx = Tensor._wrap(xp.concatenate(parts, axis=1))
    vals = cat([t._vals for t in tensors], 0)
    shape = tuple(first.shape[:dim]) + (len(tensors),) + tuple(first.shape[dim:])
    coalesced = dim == 0 and all(t.is_coalesced() for t in tensors)
    return SparseTensor._make(idx, vals, shape, coalesced)


def route_getitem(args, kwargs):
    """``GetItem`` reaching a sparse tensor: an integer (after full slices) selects, as
    ``select``; any other index is refused."""
    x, index = args[0], args[1]
    if not isinstance(index, tuple):
        index = (index,)
    full = slice(None)
    ints = [i for i, ix in enumerate(index) if isinstance(ix, (int, np.integer))]
    rest_ok = all(ix == full or ix is Ellipsis for i, ix in enumerate(index) if i not in ints) and (
        Ellipsis not in index[: ints[0]] if ints else True
    )
    if len(ints) != 1 or not rest_ok or any(ix != full for ix in index[: ints[0]]):
        raise _unsupported("indexing other than an integer along one dimension")
    return select(x, ints[0], int(index[ints[0]]))


def route_stack(args, kwargs):
    dim, *tensors = args
    return stack(tensors, dim)


def unsqueeze(self: SparseTensor, dim: int) -> SparseTensor:
    """A new sparse dimension of size 1 at ``dim`` (at most the number of sparse dimensions),
    as PyTorch's ``unsqueeze`` of a sparse COO tensor (``SparseEncoder.decode`` of one row)."""
    from ..tensor import Tensor

    if not 0 <= dim <= self.sparse_dim():
        raise _unsupported(f"unsqueeze() at dimension {dim} (past the sparse dimensions)")
    idx = self._idx._data
    xp = get_array_module(idx)
    zero = xp.zeros((1, idx.shape[1]), dtype=np.int64)
    new_idx = Tensor._wrap(xp.concatenate([idx[:dim], zero, idx[dim:]], axis=0))
    shape = tuple(self.shape[:dim]) + (1,) + tuple(self.shape[dim:])
    return SparseTensor._make(new_idx, self._vals, shape, self.is_coalesced())


def route_reshape(args, kwargs):
    """``Reshape`` reaching a sparse tensor: only an inserted dimension of size 1 (unsqueeze)."""
    x, shape = args[0], tuple(args[1])
    old = tuple(x.shape)
    if len(shape) == len(old) + 1:
        for d in range(len(shape)):
            if shape[d] == 1 and shape[:d] + shape[d + 1 :] == old:
                return unsqueeze(x, d)
    raise _unsupported("the operation 'reshape' (other than unsqueeze)")
