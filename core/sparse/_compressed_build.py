"""Conversions between the dense, COO and sparse compressed layouts (the factories and their
checks are in ``_compressed_factories.py``).

Every conversion goes through one builder, :func:`_compress`: given each stored element's batch
number, compressed index (row of CSR, column of CSC, block row/column of BSR/BSC) and plain
index, it sorts them and counts the compressed indices. The values move with differentiable
indexing, so gradients flow through every conversion.
"""

from __future__ import annotations

import numpy as np

from ..backend.device import get_array_module
from ..tensor import Tensor
from ._compressed import (
    BLOCK_LAYOUTS,
    COMPRESSED_LAYOUTS,
    ROW_LAYOUTS,
    SparseCompressedTensor,
)

_wrap = Tensor._wrap


# ---- conversions ------------------------------------------------------------------------
def _compress(vals: Tensor, b, c, p, batch: tuple, n_c: int, shape, lay):
    """The compressed tensor of elements ``vals[i]`` (``(N, *tail)``) at batch ``b[i]``,
    compressed index ``c[i]`` and plain index ``p[i]``; every batch must hold as many."""
    xp = get_array_module(c)
    nbat = 1
    for s in batch:
        nbat *= s
    key = (b * n_c + c) * (int(p.max()) + 1 if p.size else 1) + p
    if key.size > 1 and not bool((key[1:] > key[:-1]).all()):
        order = xp.argsort(key, kind="stable")
        b, c, p = b[order], c[order], p[order]
        vals = vals[_wrap(order)] if vals.requires_grad else _wrap(vals._data[order])
    counts = xp.bincount(b * n_c + c, minlength=nbat * n_c).reshape(nbat, n_c)
    per = counts.sum(axis=1)
    if nbat and bool((per != per[0]).any()):
        raise RuntimeError(
            "Expect the same number of specified elements per batch, but got "
            f"{[int(n) for n in per]}"
        )
    nnz = int(per[0]) if nbat else 0
    cidx = xp.concatenate([xp.zeros((nbat, 1), np.int64), xp.cumsum(counts, axis=1)], axis=1)
    cidx = cidx.astype(np.int64).reshape(batch + (n_c + 1,))
    pidx = p.astype(np.int64).reshape(batch + (nnz,))
    vals = vals.reshape(batch + (nnz,) + tuple(vals.shape[1:]))
    return SparseCompressedTensor._make(_wrap(cidx), _wrap(pidx), vals, tuple(shape), lay)


def _layout_of(name_or_layout):
    for lay in COMPRESSED_LAYOUTS:
        if name_or_layout is lay or str(name_or_layout) in (lay.name, f"ember.{lay.name}"):
            return lay
    return None


def dense_to_compressed(x: Tensor, lay, blocksize=None, dense_dim=None):
    """``x`` (``(*batch, n, m, *dense)``) in layout ``lay``: its non-zero elements (blocks)."""
    nd = x.dim()
    dd = int(dense_dim or 0)
    nb = nd - 2 - dd
    if nb < 0:
        raise RuntimeError(
            f"to_{lay.name}: expected at least 2 sparse dims, got a {nd}-D tensor with "
            f"dense_dim={dd}"
        )
    batch = tuple(x.shape[:nb])
    n, m = x.shape[nb], x.shape[nb + 1]
    dense = tuple(x.shape[nb + 2 :])
    is_block = lay in BLOCK_LAYOUTS
    if is_block:
        if blocksize is None or len(tuple(blocksize)) != 2:
            raise RuntimeError(f"to_{lay.name}: blocksize must be a pair of ints, got {blocksize}")
        R, C = (int(s) for s in blocksize)
        if R <= 0 or C <= 0 or n % R or m % C:
            raise RuntimeError(
                f"dense_to_{lay.name}: tensor sparse size ({n},{m}) must be divisible by given "
                f"blocksize ({R},{C})"
            )
        g = x.reshape(batch + (n // R, R, m // C, C) + dense)
        g = g.permute(*range(nb), nb, nb + 2, nb + 1, nb + 3, *range(nb + 4, nb + 4 + len(dense)))
        gn, gm, tail = n // R, m // C, (R, C) + dense
    else:
        if blocksize is not None:
            raise RuntimeError(f"to_{lay.name}: blocksize is for the block layouts only")
        g, gn, gm, tail = x, n, m, dense
    rows_c = lay in ROW_LAYOUTS
    if not rows_c:  # compress along columns: the grid's two axes swap, each block's do not
        g = g.transpose(nb, nb + 1)
    nbat = 1
    for s in batch:
        nbat *= s
    n_c, n_p = (gn, gm) if rows_c else (gm, gn)
    g = g.reshape((nbat, n_c, n_p) + tail)
    d = g._data
    xp = get_array_module(d)
    mask = d != 0
    if tail:
        mask = mask.reshape((nbat, n_c, n_p, -1)).any(axis=-1)
    b, c, p = xp.nonzero(mask)
    if g.requires_grad:
        vals = g[_wrap(b), _wrap(c), _wrap(p)]
    else:
        vals = _wrap(d[b, c, p])
    return _compress(vals, b, c, p, batch, n_c, x.shape, lay)


def elements(s: SparseCompressedTensor):
    """Every stored scalar (or dense slice) of ``s``: ``(values (N, *dense), batch, rows,
    cols)``, blocks expanded; the index arrays are kept on ``s`` while its indices stay."""
    cidx, pidx = s._cidx, s._pidx
    cache = s._cache
    if cache is None or cache[0] is not cidx._data or cache[1] is not pidx._data:
        xp = get_array_module(cidx._data)
        nb = cidx.dim() - 1
        c2 = cidx._data.reshape(-1, cidx.shape[-1])
        nbat, n_c = c2.shape[0], c2.shape[1] - 1
        counts = xp.diff(c2, axis=1).reshape(-1)
        comp = xp.repeat(xp.tile(xp.arange(n_c, dtype=np.int64), nbat), counts)
        plain = pidx._data.reshape(-1).astype(np.int64, copy=False)
        b = xp.repeat(xp.arange(nbat, dtype=np.int64), pidx.shape[-1])
        r, c = (comp, plain) if s._layout in ROW_LAYOUTS else (plain, comp)
        if s._layout in BLOCK_LAYOUTS:
            R, C = s._blocksize()
            r = (r[:, None, None] * R + xp.arange(R)[None, :, None]) + xp.zeros((1, 1, C), int)
            c = (c[:, None, None] * C + xp.arange(C)[None, None, :]) + xp.zeros((1, R, 1), int)
            r, c = r.reshape(-1), c.reshape(-1)
            b = xp.repeat(b, R * C)
        cache = s._cache = (cidx._data, pidx._data, (b, r, c), {}, nb)
    nb = cache[4]
    v = s._vals
    v = v.reshape((-1,) + tuple(v.shape[nb + 1 + 2 * (s._layout in BLOCK_LAYOUTS) :]))
    return (v,) + cache[2]


def plans(s: SparseCompressedTensor) -> dict:
    """The segment plans cached with :func:`elements` (sparse/_ops.py's ``_SegmentPlan``)."""
    elements(s)
    return s._cache[3]


def compressed_to_dense(s: SparseCompressedTensor) -> Tensor:
    from ._ops import _ToDense

    v, b, r, c = elements(s)
    nb = s._batch_dim()
    nbat = 1
    for k in s.shape[:nb]:
        nbat *= k
    n, m = s.shape[nb], s.shape[nb + 1]
    keys = (b * n + r) * m + c
    out = _ToDense.apply(v, keys, (nbat, n, m) + tuple(s.shape[nb + 2 :]))
    return out.reshape(tuple(s.shape))


def compressed_to_compressed(s: SparseCompressedTensor, lay, blocksize=None):
    """``s`` in another compressed layout: element-wise ones keep every stored element (the
    values move with their indices); block targets go through the dense form."""
    if lay is s._layout and (blocksize is None or tuple(blocksize) == s._blocksize()):
        return s
    if lay in BLOCK_LAYOUTS:
        return dense_to_compressed(compressed_to_dense(s), lay, blocksize, s.dense_dim())
    v, b, r, c = elements(s)
    nb = s._batch_dim()
    n, m = s.shape[nb], s.shape[nb + 1]
    cc, pp, n_c = (r, c, n) if lay in ROW_LAYOUTS else (c, r, m)
    return _compress(v, b, cc, pp, tuple(s.shape[:nb]), n_c, s.shape, lay)


def coo_to_compressed(x, lay, blocksize=None):
    """A 2-D sparse COO tensor (with dense dims) in a compressed layout."""
    if x.sparse_dim() != 2 or lay in BLOCK_LAYOUTS:
        return dense_to_compressed(x.to_dense(), lay, blocksize, x.dense_dim())
    x = x.coalesce()
    idx = x._idx._data
    xp = get_array_module(idx)
    b = xp.zeros(idx.shape[1], np.int64)
    cc, pp = (idx[0], idx[1]) if lay in ROW_LAYOUTS else (idx[1], idx[0])
    n_c = x.shape[0] if lay in ROW_LAYOUTS else x.shape[1]
    return _compress(x._vals, b, cc, pp, (), n_c, x.shape, lay)


def compressed_to_coo(s: SparseCompressedTensor):
    """``s`` as a coalesced sparse COO tensor (batch dims become sparse dims)."""
    from ._coo import SparseTensor

    v, b, r, c = elements(s)
    nb = s._batch_dim()
    xp = get_array_module(r)
    n, m = s.shape[nb], s.shape[nb + 1]
    key = (b * n + r) * m + c
    if key.size > 1 and not bool((key[1:] > key[:-1]).all()):
        order = xp.argsort(key, kind="stable")
        b, r, c = b[order], r[order], c[order]
        v = v[_wrap(order)] if v.requires_grad else _wrap(v._data[order])
    parts = list(xp.unravel_index(b, tuple(s.shape[:nb]))) if nb else []
    idx = xp.stack(parts + [r, c]).astype(np.int64)
    return SparseTensor._make(_wrap(idx), v, tuple(s.shape), True)


def to_layout(x, lay, blocksize=None, dense_dim=None):
    """``x`` (dense, COO or compressed) in the compressed layout ``lay``."""
    from ._coo import SparseTensor

    if isinstance(x, SparseCompressedTensor):
        if dense_dim is not None and dense_dim != x.dense_dim():
            raise RuntimeError(f"to_{lay.name}: dense_dim cannot change in a conversion")
        return compressed_to_compressed(x, lay, blocksize)
    if isinstance(x, SparseTensor):
        return coo_to_compressed(x, lay, blocksize)
    return dense_to_compressed(x, lay, blocksize, dense_dim)
