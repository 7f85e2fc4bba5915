"""Optimizer state dicts of FSDP units with ``use_orig_params=True``.

There the optimizer steps the original parameters, each a view of this rank's part of its flat
shard (1-D, possibly empty; the original shape under NO_SHARD), so per-element state is one
such slice per parameter. Going out, the slices of a flat parameter are put back into a
shard-sized buffer, which is then gathered (``FULL_STATE_DICT``) or cut into pieces
(``SHARDED_STATE_DICT``) exactly like the flat-parameter state of ``_optim_state_dict``.
Coming in, ``_optim_state_dict._flat_state`` rebuilds the shard and each original parameter
takes its slice. Keys are PyTorch's: original parameter names, state per parameter.
"""

from __future__ import annotations

import numpy as np

import ember
from ember import _interop
from ember.backend import get_array_module

from .. import _objects
from .. import distributed_c10d as c10d
from ._orig_params import local_range
from ._state_dict import piece, units_of

# Zero-dim state that is per optimizer step, not per element (matters for 0-d parameters).
_SCALAR_KEYS = frozenset({"step", "mu_product"})


def orig_handles(model) -> dict:
    """id(original parameter) -> (handle, entry index), over every use_orig_params unit."""
    out = {}
    for u in units_of(model):
        for h in u._handles:
            if h.orig_params is not None:
                for j, p in enumerate(h.orig_params):
                    out[id(p)] = (h, j)
    return out


def _is_element(view, key, v) -> bool:
    return (
        isinstance(v, ember.Tensor)
        and key not in _SCALAR_KEYS
        and tuple(v.shape) == tuple(view.shape)
    )


def _shard_buffer(h, key, states: dict):
    """This rank's flat shard of state ``key`` (zeros where no parameter has it)."""
    xp = get_array_module(h._flat_array)
    buf = xp.zeros(h.shard_size, dtype=h.dtype)
    for j, st in states.items():
        if st and key in st:
            a, b = local_range(h, h.entries[j])
            buf[a:b] = _interop.array_of(st[key]).reshape(-1)
    return buf


def gather_shard(h, buf):
    """Handle ``h``'s flat state, whole (padded): every rank's shard-sized ``buf`` gathered
    over the unit's group (a collective); ``buf`` itself when the unit is not sharded. Both
    the flat-parameter and the original-parameter optimizer state dicts gather with it."""
    if h.nshards == 1:
        return buf
    out = get_array_module(buf).empty(h.padded, dtype=buf.dtype)
    c10d.all_gather_into_tensor(
        _interop.wrap(out), _interop.wrap(buf), group=h.config.process_group
    )
    return out


def _scalar(v):
    """A 0-d state value in a form that pickles without ember (for the metadata exchange)."""
    if isinstance(v, ember.Tensor):
        return ("tensor", np.asarray(v.numpy()).copy())
    return ("value", v)


def _unscalar(v):
    kind, x = v
    return _interop.wrap(x.copy()) if kind == "tensor" else x


def state_per_name(model, optim_states: dict, names_of: dict, full: bool) -> dict:
    """``{name: state}`` of the original parameters of every use_orig_params unit.

    ``optim_states`` maps id(parameter) -> its optimizer state (as ``optim.state_dict()``
    holds it); ``names_of`` maps (handle id, entry index) -> name. Under ``full`` every rank
    takes part (the gathers are collectives) and gets the full, unsharded state.
    """
    handles = []  # the units' handles, in the same order on every rank
    for u in units_of(model):
        handles += [h for h in u._handles if h.orig_params is not None]
    per_handle = []
    meta = {}  # handle index -> (element keys, {entry: {scalar key: value}})
    for k, h in enumerate(handles):
        states = {j: optim_states.get(id(p)) for j, p in enumerate(h.orig_params)}
        keys, scalars = set(), {}
        for j, st in states.items():
            for key, v in (st or {}).items():
                if _is_element(h.orig_views[j], key, v):
                    keys.add(key)
                else:
                    scalars.setdefault(j, {})[key] = _scalar(v)
        per_handle.append(states)
        meta[k] = (keys, scalars)
    if full and c10d.get_world_size() > 1:
        # a parameter can have no elements (hence no state) on some ranks: the key sets and
        # the per-step scalars are agreed on first, so every rank issues the same gathers
        everyone = [None] * c10d.get_world_size()
        _objects.all_gather_object(everyone, meta)
        for k in meta:
            keys, scalars = set(), {}
            for other in everyone:
                keys |= other[k][0]
                for j, sc in other[k][1].items():
                    scalars.setdefault(j, sc)
            meta[k] = (keys, scalars)
    out = {}
    for k, (h, states) in enumerate(zip(handles, per_handle)):
        keys, scalars = meta[k]
        per = {j: {} for j in range(len(h.entries))}
        for key in sorted(keys):
            buf = _shard_buffer(h, key, states)
            if full:
                flat = gather_shard(h, buf)
                for j, e in enumerate(h.entries):
                    per[j][key] = _interop.wrap(
                        flat[e.offset : e.offset + e.numel].reshape(e.shape).copy()
                    )
            else:
                for j, e in enumerate(h.entries):
                    if states.get(j):  # this rank's piece, where it holds any state
                        per[j][key] = piece(h, e, buf)
        for j, sc in scalars.items():
            per[j].update({key: _unscalar(v) for key, v in sc.items()})
        for j, st in per.items():
            if st:
                out[names_of[(id(h), j)]] = st
    return out


def view_state(h, j: int, flat_states: dict, scalars: dict) -> dict | None:
    """The optimizer state of original parameter ``j`` of ``h``: its slice of each rebuilt
    flat shard in ``flat_states`` (key -> shard array) and the 0-d ``scalars``; None when
    this rank holds none of its elements."""
    view = h.orig_views[j]
    if view.size == 0:
        return None
    a, b = local_range(h, h.entries[j])
    st = {
        key: _interop.wrap(arr[a:b].reshape(view.shape).copy()) for key, arr in flat_states.items()
    }
    st.update(scalars)
    return st
