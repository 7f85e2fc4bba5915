"""Optimizer state dicts of FSDP / ZeRO wrappers, keyed by ORIGINAL parameter names.

The optimizer steps the flat parameters, so its per-element state (``exp_avg``,
``momentum_buffer``, ...) is one 1-D tensor per flat parameter holding this rank's shard.
``optim_state_dict`` cuts it back into the original parameters: gathered in full
(``FULL_STATE_DICT``, PyTorch's layout ``{"state": {name: {...}}, "param_groups": [{...,
"params": [names]}]}``) or as this rank's pieces (``SHARDED_STATE_DICT``). Zero-dim state
(``step``) is copied to every parameter of the flat parameter. ``to_load`` goes the other way,
for any number of ranks from the full form. With ``use_orig_params=True`` the optimizer holds
the original parameters (views of the shard) instead: see ``_orig_optim_state``.
"""

from __future__ import annotations

import ember
from ember import _interop
from ember.backend import get_array_module
from ember.nn import Module

from .. import distributed_c10d as c10d
from ._orig_optim_state import (
    _SCALAR_KEYS,
    gather_shard,
    orig_handles,
    state_per_name,
    view_state,
)
from ._state_dict import (
    SHARD_META,
    as_array,
    check_meta,
    fqn_maps,
    is_piece,
    original_named_parameters,
    piece,
    place_piece,
    units_of,
)
from .api import OptimStateKeyType, StateDictType


def _handles(model: Module) -> dict:
    return {id(h.flat_param): h for u in units_of(model) for h in u._handles}


def _params(optim) -> list:
    return [p for g in optim.param_groups for p in g["params"]]


def _settings(model: Module):
    units = units_of(model)
    if not units:
        raise ValueError("optim_state_dict: the model contains no FSDP / ZeRO unit")
    return units[0]._settings


def _per_element(h, value) -> bool:
    return isinstance(value, ember.Tensor) and tuple(value.shape) == (h.shard_size,)


def _clone(v):
    if isinstance(v, ember.Tensor):
        return _interop.wrap(_interop.array_of(v).copy())
    return v


def optim_state_dict(model: Module, optim, osd=None) -> dict:
    settings = _settings(model)
    full = settings.state_dict_type is StateDictType.FULL_STATE_DICT
    osd = optim.state_dict() if osd is None else osd
    handles = _handles(model)
    fqns, plain = fqn_maps(model)
    state, names_of = {}, {}
    rank, world = c10d.get_rank(), c10d.get_world_size()
    orig = orig_handles(model)
    if orig:  # use_orig_params=True: the optimizer holds the original parameters
        entry_names = {(id(h), j): h.names(fqns)[j] for h, j in orig.values()}
        params = _params(optim)
        for i, p in enumerate(params):
            if id(p) in orig:
                h, j = orig[id(p)]
                names_of[i] = [entry_names[(id(h), j)]]
        mine = {id(p): osd["state"].get(i) for i, p in enumerate(params) if id(p) in orig}
        state.update(state_per_name(model, mine, entry_names, full))
    for i, p in enumerate(_params(optim)):
        if id(p) in orig:
            continue
        st = osd["state"].get(i)
        h = handles.get(id(p))
        if h is None:
            if id(p) not in plain:
                raise ValueError(
                    f"optim_state_dict: the optimizer's parameter {i} (shape "
                    f"{tuple(p.shape)}) does not belong to the model"
                )
            names_of[i] = [plain[id(p)]]
            if st:
                state[plain[id(p)]] = {k: _clone(v) for k, v in st.items()}
            continue
        names = h.names(fqns)
        names_of[i] = names
        if not st:
            continue
        per = [{} for _ in names]
        for key, v in st.items():
            if _per_element(h, v):
                if full:
                    flat = gather_shard(h, _interop.array_of(v))
                    for d, e in zip(per, h.entries):
                        d[key] = _interop.wrap(
                            flat[e.offset : e.offset + e.numel].reshape(e.shape).copy()
                        )
                else:
                    for d, e in zip(per, h.entries):
                        d[key] = piece(h, e, _interop.array_of(v))
            else:
                for d in per:
                    d[key] = _clone(v)
        state.update(zip(names, per))
    groups = []
    for g in osd["param_groups"]:
        new = {k: v for k, v in g.items() if k not in ("params", "param_names")}
        new["params"] = [n for i in g["params"] for n in names_of[i]]
        groups.append(new)
    out = {"state": state, "param_groups": groups}
    if not full:
        out[SHARD_META] = {"rank": rank, "world_size": world}
    elif getattr(settings.optim_state_dict_config, "rank0_only", False) and rank != 0:
        return {}
    return out


def to_load(model: Module, optim, osd: dict) -> dict:
    for key in ("state", "param_groups"):
        if key not in osd:
            raise KeyError(f"optimizer state_dict is missing the key {key!r}")
    sharded = SHARD_META in osd
    handles = _handles(model)
    fqns, plain = fqn_maps(model)
    if sharded:
        check_meta(
            osd[SHARD_META],
            c10d.get_rank(),
            c10d.get_world_size(),
            "this sharded optimizer state dict",
        )
    saved = osd["state"]
    state = {}
    orig, rebuilt = orig_handles(model), {}
    for i, p in enumerate(_params(optim)):
        if id(p) in orig:
            h, j = orig[id(p)]
            if id(h) not in rebuilt:
                rebuilt[id(h)] = _orig_flat_states(h, fqns, saved, sharded)
            flat_states, scalars = rebuilt[id(h)]
            st = view_state(h, j, flat_states, scalars[j]) if scalars[j] is not None else None
            if st is not None:
                state[i] = st
            continue
        h = handles.get(id(p))
        if h is None:
            name = plain.get(id(p))
            if name is not None and name in saved:
                state[i] = dict(saved[name])
            continue
        names = h.names(fqns)
        sts = [saved.get(n) for n in names]
        present = [s for s in sts if s]
        if not present:
            continue
        new = {}
        for key in present[0]:
            if _is_element_key(h, key, sts):
                new[key] = _interop.wrap(_flat_state(h, key, sts, names, sharded))
            else:
                new[key] = present[0][key]
        state[i] = new
    saved_groups = osd["param_groups"]
    if len(saved_groups) != len(optim.param_groups):
        raise ValueError(
            f"the optimizer state dict has {len(saved_groups)} parameter groups "
            f"but the optimizer has {len(optim.param_groups)}"
        )
    groups, start = [], 0
    for g, mine in zip(saved_groups, optim.param_groups):
        new = {k: v for k, v in g.items() if k not in ("params", "param_names")}
        new["params"] = list(range(start, start + len(mine["params"])))
        start += len(mine["params"])
        groups.append(new)
    return {"state": state, "param_groups": groups}


def _orig_flat_states(h, fqns, saved: dict, sharded: bool):
    """For a use_orig_params handle: each per-element key's rebuilt flat shard, and each
    entry's 0-d state (None for an entry with no saved state)."""
    names = h.names(fqns)
    sts = [saved.get(n) for n in names]
    present = [s for s in sts if s]
    keys = list(dict.fromkeys(k for s in present for k in s))
    elem = [k for k in keys if _is_element_key(h, k, sts)]
    flat = {k: _flat_state(h, k, sts, names, sharded) for k in elem}
    scalars = [None if not s else {k: v for k, v in s.items() if k not in elem} for s in sts]
    return flat, scalars


def _is_element_key(h, key, sts) -> bool:
    """Whether state ``key`` holds one value per element (decided by the first parameter that
    is not 0-d; for 0-d parameters only by the key's name)."""
    for e, s in zip(h.entries, sts):
        if not s or key not in s:
            continue
        v = s[key]
        if is_piece(v):
            return True
        if e.shape != ():
            return tuple(getattr(v, "shape", ())) == e.shape
    return key not in _SCALAR_KEYS


def _flat_state(h, key, sts, names, sharded: bool):
    xp = get_array_module(h._flat_array)
    lo, hi = h.shard_bounds()
    if sharded:
        out = xp.zeros(h.shard_size, dtype=h.dtype)
        for e, s, n in zip(h.entries, sts, names):
            if s and key in s:
                place_piece(h, e, s[key], out, f"state '{key}' of '{n}'")
        return out
    full = xp.zeros(h.padded, dtype=h.dtype)
    for e, s, n in zip(h.entries, sts, names):
        if s and key in s:
            arr = as_array(s[key], xp)
            if tuple(arr.shape) != e.shape:
                raise ValueError(
                    f"optimizer state '{key}' of '{n}' has shape "
                    f"{tuple(arr.shape)}, the parameter has shape {e.shape}"
                )
            full[e.offset : e.offset + e.numel] = arr.reshape(-1)
    return full[lo:hi].copy()


def rekey(osd: dict, key_type: OptimStateKeyType, model: Module) -> dict:
    """Name-keyed <-> id-keyed for the unwrapped parameter order of ``model``."""
    names = original_named_parameters(model)
    ids = {n: i for i, n in enumerate(names)}
    if key_type is OptimStateKeyType.PARAM_ID:

        def conv(k):
            if isinstance(k, int):
                return k
            if k not in ids:
                raise KeyError(f"rekey_optim_state_dict: the model has no parameter {k!r}")
            return ids[k]
    elif key_type is OptimStateKeyType.PARAM_NAME:

        def conv(k):
            if isinstance(k, str):
                return k
            if not 0 <= k < len(names):
                raise KeyError(f"rekey_optim_state_dict: the model has no parameter id {k}")
            return names[k]
    else:
        raise TypeError(f"optim_state_key_type must be an OptimStateKeyType, got {key_type!r}")
    state = {conv(k): v for k, v in osd["state"].items()}
    # an optimizer over model.parameters() lists its parameters in id order
    groups = [
        dict(
            g,
            params=[
                conv(k)
                for k in sorted(
                    g["params"], key=lambda k: k if isinstance(k, int) else ids.get(k, len(ids))
                )
            ],
        )
        for g in osd["param_groups"]
    ]
    return {"state": state, "param_groups": groups}
