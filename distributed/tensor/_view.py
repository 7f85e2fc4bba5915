"""Sharding propagation for DTensor's view operators: ``view``/``reshape``, ``transpose`` and
``permute``.

A reshape keeps a ``Shard`` when the sharded dimension is the outermost (non-1) dimension of
the block of input dimensions it is merged or split with, and both it and the matching output
dimension divide evenly by the ranks sharding it: each rank's piece is then one contiguous run
of that block, the same run before and after. ``[B, S, H*D] Shard(2) -> [B, S, H, D]`` is
``Shard(2)`` with ``H/k`` heads per rank; anything else is gathered first.
"""

from __future__ import annotations

import math

from ._api import DTensor
from ._dispatch import _moved, _norm_dim, _wrap
from .placement_types import Replicate, Shard

__all__ = ["reshape", "transpose", "permute"]


def _resolve(shape, numel: int, what: str) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = [int(s) for s in shape]
    if shape.count(-1) > 1:
        raise RuntimeError(f"{what}: only one dimension can be inferred")
    if -1 in shape:
        rest = math.prod(s for s in shape if s != -1)
        if rest == 0 or numel % rest:
            raise RuntimeError(f"{what}: shape '{shape}' is invalid for input of size {numel}")
        shape[shape.index(-1)] = numel // rest
    if math.prod(shape) != numel:
        raise RuntimeError(f"{what}: shape '{shape}' is invalid for input of size {numel}")
    return tuple(shape)


def _groups(src, dst):
    """Blocks of input and output dimensions with equal products, in order."""
    groups, i, j = [], 0, 0
    while i < len(src) and j < len(dst):
        ins, outs, pi, po = [i], [j], src[i], dst[j]
        i, j = i + 1, j + 1
        while pi != po:
            if pi < po:
                ins.append(i)
                pi *= src[i]
                i += 1
            else:
                outs.append(j)
                po *= dst[j]
                j += 1
        groups.append((ins, outs))
    if groups:  # trailing size-1 dimensions join the last block
        groups[-1][0].extend(range(i, len(src)))
        groups[-1][1].extend(range(j, len(dst)))
    return groups


def reshape(x: DTensor, *shape) -> DTensor:
    """``x.reshape(shape)`` / ``x.view(shape)`` (a local reshape when the shards allow)."""
    src = x._shape
    numel = math.prod(src)
    dst = _resolve(shape, numel, "DTensor.view")
    mesh = x.device_mesh
    # tensor dim -> mesh dims sharding it
    by_dim: dict[int, list[int]] = {}
    for i, p in enumerate(x.placements):
        if isinstance(p, Shard):
            by_dim.setdefault(p.dim, []).append(i)
    target, out = list(x.placements), list(x.placements)
    groups = _groups(src, dst) if numel else []
    for d, mesh_dims in by_dim.items():
        k = math.prod(mesh.size(i) for i in mesh_dims)
        block = next(((ins, outs) for ins, outs in groups if d in ins), None)
        ok = block is not None
        if ok:
            ins, outs = block
            lead_in = next((a for a in ins if src[a] != 1), None)
            lead_out = next((b for b in outs if dst[b] != 1), None)
            sharded_here = [e for e in by_dim if e in ins]
            ok = (
                lead_in == d
                and lead_out is not None
                and src[d] % k == 0
                and dst[lead_out] % k == 0
                and sharded_here == [d]
            )
        for i in mesh_dims:
            if ok:
                out[i] = Shard(lead_out)
            else:
                target[i] = out[i] = Replicate()
    x = _moved(x, target)
    local = list(dst)
    for i, p in enumerate(out):
        if isinstance(p, Shard):
            local[p.dim] //= mesh.size(i)
    return _wrap(x._local_tensor.reshape(tuple(local)), mesh, out, dst)


def transpose(x: DTensor, dim0: int, dim1: int) -> DTensor:
    n = x.ndim
    d0, d1 = _norm_dim(dim0, n, "DTensor.transpose"), _norm_dim(dim1, n, "DTensor.transpose")
    swap = {d0: d1, d1: d0}
    out = [Shard(swap.get(p.dim, p.dim)) if isinstance(p, Shard) else p for p in x.placements]
    shape = list(x._shape)
    shape[d0], shape[d1] = shape[d1], shape[d0]
    return _wrap(x._local_tensor.transpose(d0, d1), x.device_mesh, out, shape)


def permute(x: DTensor, *dims) -> DTensor:
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = tuple(dims[0])
    n = x.ndim
    dims = tuple(_norm_dim(d, n, "DTensor.permute") for d in dims)
    if sorted(dims) != list(range(n)):
        raise RuntimeError(f"DTensor.permute: dims {dims} are not a permutation of {n} dims")
    out = [Shard(dims.index(p.dim)) if isinstance(p, Shard) else p for p in x.placements]
    shape = [x._shape[d] for d in dims]
    return _wrap(x._local_tensor.permute(*dims), x.device_mesh, out, shape)
