"""``ember.sparse_coo_tensor``: a sparse COO tensor from indices and values, with PyTorch's
checks and messages."""

from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from ._coo import SparseTensor


def _as_index_array(indices):
    """The indices as an int64 array on their own device (Tensor, NumPy, CuPy or lists)."""
    if isinstance(indices, Tensor):
        if isinstance(indices, SparseTensor):
            raise TypeError("sparse_coo_tensor(): indices must be a dense tensor")
        a = indices._data
    elif hasattr(indices, "__array_namespace__") or isinstance(indices, np.ndarray):
        a = indices
    else:
        a = np.asarray(indices)
    if a.dtype.kind not in "iu":
        raise RuntimeError(f"indices must be an int64 tensor, but got {a.dtype}")
    return a.astype(np.int64, copy=False)


def sparse_coo_tensor(
    indices,
    values,
    size=None,
    *,
    dtype=None,
    device=None,
    requires_grad: bool = False,
    check_invariants: bool | None = None,
    is_coalesced: bool | None = None,
) -> SparseTensor:
    r"""A sparse COO tensor with ``values`` at ``indices`` (PyTorch's
    ``torch.sparse_coo_tensor``).

    Args:
        indices (array_like): integer ``(sparse_dim, nnz)`` coordinates; duplicates are
            allowed (they add up on :meth:`~SparseTensor.coalesce` and in every op).
        values (array_like): ``(nnz, *dense_shape)`` entries. A tensor that requires grad
            stays in the graph: gradients of ops on the result reach it.
        size (tuple of ints, optional): the full size; by default the smallest size that
            holds every index, followed by the dense shape of ``values``.
        dtype, device: of the values (default: those of ``values``).
        requires_grad: make the result a leaf that requires grad (its ``.grad`` is sparse).
        check_invariants: accepted; indices are always checked against ``size``.
        is_coalesced: trust that ``indices`` are sorted and unique (``True``); by default
            (as PyTorch) a tensor of two or more entries is marked uncoalesced.

    Example::

        >>> i = ember.tensor([[0, 1, 1], [2, 0, 2]])
        >>> s = ember.sparse_coo_tensor(i, ember.tensor([3.0, 4.0, 5.0]), (2, 3))
        >>> s.to_dense()
        tensor([[0., 0., 3.],
                [4., 0., 5.]])
    """
    from ..backend.device import get_array_module
    from ..backend.dtype import to_dtype
    from ..creation import tensor as _tensor

    idx = _as_index_array(indices)
    if isinstance(values, Tensor):
        vals = values
        if dtype is not None or device is not None:
            vals = vals.to(device=device, dtype=None if dtype is None else to_dtype(dtype))
    else:
        vals = _tensor(values, dtype=dtype, device=device)
    if vals.dim() == 0:
        raise RuntimeError("values must have at least one dimension (nnz)")
    if idx.ndim != 2:
        raise RuntimeError(f"indices must be sparse_dim x nnz, but got: {list(idx.shape)}")
    sparse_dim, nnz = idx.shape
    if nnz != vals.shape[0]:
        raise RuntimeError(
            "indices and values must have same nnz, but got nnz from indices: "
            f"{nnz}, nnz from values: {vals.shape[0]}"
        )
    xp = get_array_module(vals._data)
    if get_array_module(idx) is not xp:  # indices follow the values' device
        idx = xp.asarray(idx.get() if hasattr(idx, "get") else idx)
    dense_shape = tuple(vals.shape[1:])
    if size is None:
        sparse_size = tuple(int(m) + 1 for m in idx.max(axis=1)) if nnz else (0,) * sparse_dim
        shape = sparse_size + dense_shape
    else:
        shape = tuple(int(s) for s in size)
        if len(shape) != sparse_dim + len(dense_shape) or shape[sparse_dim:] != dense_shape:
            raise RuntimeError(
                f"number of dimensions must be sparse_dim ({sparse_dim}) + dense_dim "
                f"({len(dense_shape)}), but got {len(shape)} (size={list(shape)}, values "
                f"shape={list(vals.shape)})"
            )
        if nnz:
            hi, lo = idx.max(axis=1), idx.min(axis=1)
            for d in range(sparse_dim):
                if int(lo[d]) < 0:
                    raise RuntimeError(f"found negative index {int(lo[d])} for dim {d}")
                if int(hi[d]) >= shape[d]:
                    raise RuntimeError(
                        f"size is inconsistent with indices: for dim {d}, size is {shape[d]} "
                        f"but found index {int(hi[d])}"
                    )
    if is_coalesced is None:  # PyTorch does not look: only 0 or 1 entries are coalesced
        is_coalesced = nnz <= 1
    if requires_grad:  # a new leaf: the caller's values tensor is left as it was
        vals = vals.detach().requires_grad_(True)
    elif vals.requires_grad:
        # an alias inside the graph: the sparse tensor is a non-leaf (grad_fn set, no .grad
        # of its own) and gradients of ops on it reach the caller's values, as in PyTorch
        vals = vals.view(tuple(vals.shape))
    return SparseTensor._make(Tensor._wrap(idx), vals, shape, is_coalesced)
