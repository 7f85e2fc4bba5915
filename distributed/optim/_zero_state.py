"""State dicts of ``ZeroRedundancyOptimizer``: consolidation on one rank and sharded loading.

The consolidated form is the wrapped optimizer class's own layout (integer parameter ids in
the order of ``param_groups``), so it also loads into a plain, unsharded optimizer.
"""

from __future__ import annotations

import numpy as np

import ember
from ember import _interop

from .. import distributed_c10d as c10d
from .._objects import all_gather_object

# Zero-dim state that is per step, not per element (matters only for 0-d parameters).
_SCALAR_KEYS = frozenset({"step", "mu_product"})


def _is_flat(b, value) -> bool:
    return isinstance(value, ember.Tensor) and tuple(value.shape) == (b.shard_size,)


def _clone(v):
    return _interop.wrap(_interop.array_of(v).copy()) if isinstance(v, ember.Tensor) else v


def _param_ids(opt) -> dict:
    ids, n = {}, 0
    for g in opt.param_groups:
        for p in g["params"]:
            ids.setdefault(id(p), n)
            n += 1
    return ids


def consolidate(opt, to: int):
    """Every rank's shard state gathered into full per-parameter state on group rank ``to``."""
    pg, rank, world = opt.process_group, opt.rank, opt.world_size
    if not 0 <= to < world:
        raise ValueError(
            f"consolidate_state_dict: to={to} is not a rank of the group (0..{world - 1})"
        )
    dst = c10d.get_global_rank(pg, to) if pg is not None else to
    local = opt.optim.state
    layout = [
        [(k, _is_flat(b, v)) for k, v in local.get(b.shard, {}).items()] for b in opt._buckets
    ]
    if world > 1:
        layouts = [None] * world
        all_gather_object(layouts, layout, group=pg)
        bad = [r for r, lay in enumerate(layouts) if lay != layouts[0]]
        if bad:
            raise RuntimeError(
                f"consolidate_state_dict: ranks {bad} hold optimizer state keys "
                f"{layouts[bad[0]]} but rank 0 holds {layouts[0]} (were the "
                "optimizers stepped differently?)"
            )
    ids = _param_ids(opt)
    state: dict = {}
    for b, lay in zip(opt._buckets, layout):
        st = local.get(b.shard, {})
        for key, flat in lay:
            v = st[key]
            if not flat:
                if rank == to:
                    for p in b.params:
                        state.setdefault(ids[id(p)], {})[key] = _clone(v)
                continue
            if world == 1:
                full = _interop.array_of(v)
            else:
                arr = _interop.array_of(v)
                xp = ember.backend.get_array_module(arr)
                bufs = (
                    [_interop.wrap(xp.empty_like(arr)) for _ in range(world)]
                    if rank == to
                    else None
                )
                c10d.gather(v, bufs, dst=dst, group=pg)
                full = xp.concatenate([_interop.array_of(t) for t in bufs]) if rank == to else None
            if rank == to:
                for p, off in zip(b.params, b.offsets):
                    piece = full[off : off + p.numel()].reshape(tuple(p.shape)).copy()
                    state.setdefault(ids[id(p)], {})[key] = _interop.wrap(piece)
    if rank != to:
        return None
    groups, start = [], 0
    for g in opt.param_groups:
        packed = {k: v for k, v in g.items() if k not in ("params", "param_names")}
        packed["params"] = [ids[id(p)] for p in g["params"]]
        start += len(g["params"])
        groups.append(packed)
    return {"state": dict(sorted(state.items())), "param_groups": groups}


def _array(value):
    if isinstance(value, ember.Tensor):
        return _interop.array_of(value)
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _element_key(b, key, sts) -> bool:
    for p, s in zip(b.params, sts):
        if s and key in s and p.dim() > 0:
            return tuple(_array(s[key]).shape) == tuple(p.shape)
    return key not in _SCALAR_KEYS


def load(opt, state_dict: dict) -> None:
    for key in ("state", "param_groups"):
        if key not in state_dict:
            raise KeyError(f"optimizer state_dict is missing the key {key!r}")
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(opt.param_groups):
        raise ValueError("loaded state dict has a different number of parameter groups")
    if any(len(g["params"]) != len(s["params"]) for g, s in zip(opt.param_groups, saved_groups)):
        raise ValueError(
            "loaded state dict contains a parameter group that doesn't match the "
            "size of optimizer's group"
        )
    saved_of = {}
    for g, s in zip(opt.param_groups, saved_groups):
        for p, i in zip(g["params"], s["params"]):
            saved_of[id(p)] = state_dict["state"].get(i)
        for k, v in s.items():
            if k not in ("params", "param_names"):
                g[k] = v
    local_state, local_groups = {}, []
    for bi, b in enumerate(opt._buckets):
        local_groups.append(
            {
                k: v
                for k, v in opt.param_groups[b.group_index].items()
                if k not in ("params", "param_names")
            }
            | {"params": [bi]}
        )
        sts = [saved_of.get(id(p)) for p in b.params]
        present = [s for s in sts if s]
        if not present:
            continue
        xp = ember.backend.get_array_module(b.flat)
        new = {}
        for key in present[0]:
            if not _element_key(b, key, sts):
                new[key] = present[0][key]
                continue
            full = xp.zeros(b.flat.shape[0], dtype=b.flat.dtype)
            for p, off, s in zip(b.params, b.offsets, sts):
                if s and key in s:
                    arr = _array(s[key])
                    if tuple(arr.shape) != tuple(p.shape):
                        raise ValueError(
                            f"optimizer state '{key}' has shape {tuple(arr.shape)} "
                            f"but its parameter has shape {tuple(p.shape)}"
                        )
                    full[off : off + p.numel()] = xp.asarray(arr).reshape(-1)
            new[key] = _interop.wrap(full[b.lo : b.hi].copy())
        local_state[bi] = new
    opt.optim.load_state_dict({"state": local_state, "param_groups": local_groups})
    opt._sync_groups(to_local=False)
