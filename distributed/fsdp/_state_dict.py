"""Model state dicts of FSDP / ZeRO wrappers under the ORIGINAL parameter names.

Full form: every key of the unwrapped model's ``state_dict()`` with a full tensor (gathered).
Sharded form: the same keys, but each flattened parameter maps to this rank's piece::

    {"kind": "ember.shard", "local_shard": 1-D tensor, "offset": int, "shape": [..]}

(``offset`` counts elements of the flattened parameter), plus ``SHARD_META`` naming the rank
and world size. Buffers and parameters the wrapper does not manage are stored in full.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

import ember
from ember import _interop
from ember.backend import get_array_module
from ember.nn import Module
from ember.nn.modules.module import _IncompatibleKeys

from ._mixed_precision import buffer_for_state_dict
from .api import StateDictType

SHARD_META = "_ember_shard_meta"
SHARD_KIND = "ember.shard"


# ---- names ------------------------------------------------------------------------------
def units_of(root: Module) -> list:
    return [m for m in root.modules() if getattr(m, "_ember_fsdp_unit", False)]


def walk(root: Module):
    """``(prefix, module)`` over the original module tree (wrapper levels skipped), in the
    order ``Module.state_dict`` visits it."""

    def rec(m, prefix):
        while True:  # FSDP units and activation-checkpoint wrappers are transparent
            if getattr(m, "_ember_fsdp_unit", False):
                m = m._fsdp_wrapped_module
            elif "_checkpoint_wrapped_module" in m._modules:
                m = m._modules["_checkpoint_wrapped_module"]
            else:
                break
        yield prefix, m
        for name, child in m._modules.items():
            if child is not None:
                yield from rec(child, prefix + name + ".")

    yield from rec(root, "")


def managed_map(root: Module) -> dict:
    """(id(module), name) -> (handle, entry index) for every flattened parameter."""
    out = {}
    for u in units_of(root):
        for h in u._handles:
            for i, e in enumerate(h.entries):
                for m, name in e.aliases:
                    out[(id(m), name)] = (h, i)
    return out


def param_names(m: Module) -> list[str]:
    return m.__dict__.get("_ember_fsdp_param_names") or list(m._parameters)


def fqn_maps(root: Module):
    """``(fqns, plain)``: (id(module), name) -> name for flattened parameters (every alias),
    and id(parameter) -> name for the ones left as ordinary parameters (first occurrence)."""
    fqns, plain = {}, {}
    managed = managed_map(root)
    for prefix, m in walk(root):
        for name in param_names(m):
            if (id(m), name) in managed:
                fqns.setdefault((id(m), name), prefix + name)
            else:
                p = m._parameters.get(name)
                if p is not None:
                    plain.setdefault(id(p), prefix + name)
    return fqns, plain


def original_named_parameters(root: Module) -> list[str]:
    """The names ``named_parameters()`` of the unwrapped model would give, in its order."""
    managed = managed_map(root)
    names, seen = [], set()
    for prefix, m in walk(root):
        for name in param_names(m):
            key = managed.get((id(m), name))
            ident = (id(key[0]), key[1]) if key is not None else id(m._parameters.get(name))
            if key is None and m._parameters.get(name) is None:
                continue
            if ident not in seen:
                seen.add(ident)
                names.append(prefix + name)
    return names


def as_array(value, xp=np):
    """The array of a saved value (ember tensor, NumPy/CuPy array, torch tensor) in ``xp``."""
    if isinstance(value, ember.Tensor):
        value = _interop.array_of(value)
    elif hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    if xp is np and type(value) is not np.ndarray and hasattr(value, "get"):
        return value.get()  # CuPy -> host
    return xp.asarray(value)


def piece(h, e, flat) -> dict:
    """This rank's piece of entry ``e`` of handle ``h``, read from ``flat`` (its shard)."""
    lo, hi = h.shard_bounds()
    a, b = max(lo, e.offset), min(hi, e.offset + e.numel)
    if b <= a:
        a = b = min(max(lo, e.offset), e.offset + e.numel)
    local = flat[a - lo : b - lo].copy()
    return {
        "kind": SHARD_KIND,
        "local_shard": _interop.wrap(local),
        "offset": int(a - e.offset),
        "shape": list(e.shape),
    }


def is_piece(value) -> bool:
    return isinstance(value, dict) and value.get("kind") == SHARD_KIND


def place_piece(h, e, value, out, what: str) -> None:
    """Write a saved piece into ``out`` (this rank's shard), checking it is this rank's."""
    if not is_piece(value):
        raise RuntimeError(
            f"sharded state dict: {what} is not a shard piece (got "
            f"{type(value).__name__}); was it saved as a full state dict?"
        )
    lo, hi = h.shard_bounds()
    a, b = max(lo, e.offset), min(hi, e.offset + e.numel)
    if b <= a:
        a = b = min(max(lo, e.offset), e.offset + e.numel)
    local = as_array(value["local_shard"])
    if (
        list(value["shape"]) != list(e.shape)
        or value["offset"] != a - e.offset
        or local.size != b - a
    ):
        raise RuntimeError(
            f"mismatched shard for {what}: the checkpoint holds elements "
            f"[{value['offset']}, {value['offset'] + local.size}) of shape "
            f"{tuple(value['shape'])}, but this rank owns [{a - e.offset}, {b - e.offset}) of "
            f"shape {e.shape}; was it saved with another number of ranks or another wrapping?"
        )
    if b > a:
        out[a - lo : b - lo] = get_array_module(out).asarray(local.reshape(-1))


def check_meta(meta, rank: int, world: int, what: str) -> None:
    if not isinstance(meta, dict) or "rank" not in meta or "world_size" not in meta:
        raise RuntimeError(f"{what}: the shard metadata is malformed: {meta!r}")
    if meta["world_size"] != world or meta["rank"] != rank:
        raise RuntimeError(
            f"{what} was saved by rank {meta['rank']} of {meta['world_size']} ranks but is "
            f"being loaded on rank {rank} of {world}; a sharded state dict loads only on the "
            "same number of ranks with the same wrapping (consolidate it into a full state "
            "dict with ember.distributed.fsdp.checkpoint to change the number of ranks)"
        )


# ---- state_dict -------------------------------------------------------------------------
def state_dict(root: Module, prefix: str = "") -> OrderedDict:
    settings = root._settings
    full = settings.state_dict_type is StateDictType.FULL_STATE_DICT
    handles = [h for u in units_of(root) for h in u._handles]
    managed = managed_map(root)
    rank = handles[0].rank if handles else 0
    skip = full and getattr(settings.state_dict_config, "rank0_only", False) and rank != 0
    if full:
        for h in handles:
            h.unshard(async_op=True)
        for h in handles:
            h.wait_unshard()
    sd: OrderedDict = OrderedDict()
    sd._metadata = OrderedDict()
    if not full:
        world = handles[0].world_size if handles else 1
        sd[SHARD_META] = {"rank": rank, "world_size": world}
    try:
        if not skip:
            _fill(root, sd, prefix, managed, full)
    finally:
        if full:
            for h in handles:
                h.reshard()
    if skip:
        return OrderedDict()
    if settings.state_dict_config.offload_to_cpu:
        for k, v in sd.items():
            if isinstance(v, ember.Tensor):
                sd[k] = v.cpu()
    return sd


def _fill(root, sd, prefix, managed, full) -> None:
    for mprefix, m in walk(root):
        sd._metadata[(prefix + mprefix)[:-1]] = {"version": m._version}
        for name in param_names(m):
            key = prefix + mprefix + name
            hit = managed.get((id(m), name))
            if hit is not None:
                h, i = hit
                if full:
                    sd[key] = _interop.wrap(_interop.array_of(h._plain[i]).copy())
                else:
                    sd[key] = piece(h, h.entries[i], h._flat_array)
            elif m._parameters.get(name) is not None:
                sd[key] = m._parameters[name].detach()
        for name, b in m._buffers.items():
            if b is not None and name not in m._non_persistent_buffers_set:
                # mixed precision: buffers cast to buffer_dtype are saved in their own dtype
                sd[prefix + mprefix + name] = buffer_for_state_dict(m, name, b.detach())
        if type(m).get_extra_state is not Module.get_extra_state:
            sd[prefix + mprefix + "_extra_state"] = m.get_extra_state()


# ---- load_state_dict --------------------------------------------------------------------
def load_state_dict(root: Module, state_dict, strict: bool = True) -> _IncompatibleKeys:
    if not isinstance(state_dict, dict):
        raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
    sharded = SHARD_META in state_dict
    handles = [h for u in units_of(root) for h in u._handles]
    if sharded and handles:
        check_meta(
            state_dict[SHARD_META],
            handles[0].rank,
            handles[0].world_size,
            "this sharded state dict",
        )
    managed = managed_map(root)
    expected, errors = [], []
    for mprefix, m in walk(root):
        for name in param_names(m):
            if (id(m), name) in managed or m._parameters.get(name) is not None:
                expected.append(mprefix + name)
        for name, b in m._buffers.items():
            if b is not None and name not in m._non_persistent_buffers_set:
                expected.append(mprefix + name)
        if type(m).set_extra_state is not Module.set_extra_state:
            expected.append(mprefix + "_extra_state")
    exp = set(expected)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in exp and k != SHARD_META]
    fqns, _ = fqn_maps(root)
    for h in handles:
        _load_handle(h, state_dict, fqns, sharded, errors)
    with ember.no_grad():
        for mprefix, m in walk(root):
            for name in param_names(m):
                p = m._parameters.get(name)
                # use_orig_params registers the flat shard's views here: _load_handle did them
                if (
                    p is not None
                    and (id(m), name) not in managed
                    and (mprefix + name) in state_dict
                ):
                    _copy_into(p, state_dict[mprefix + name], mprefix + name, errors)
            for name, b in m._buffers.items():
                key = mprefix + name
                if (
                    b is not None
                    and name not in m._non_persistent_buffers_set
                    and key in state_dict
                ):
                    _copy_into(b, state_dict[key], key, errors)
            if (
                type(m).set_extra_state is not Module.set_extra_state
                and mprefix + "_extra_state" in state_dict
            ):
                m.set_extra_state(state_dict[mprefix + "_extra_state"])
    if strict:
        if unexpected:
            errors.insert(
                0,
                "Unexpected key(s) in state_dict: {}. ".format(
                    ", ".join(f'"{k}"' for k in unexpected)
                ),
            )
        if missing:
            errors.insert(
                0, "Missing key(s) in state_dict: {}. ".format(", ".join(f'"{k}"' for k in missing))
            )
    if errors:
        raise RuntimeError(
            "Error(s) in loading state_dict for {}:\n\t{}".format(
                type(root).__name__, "\n\t".join(errors)
            )
        )
    return _IncompatibleKeys(missing, unexpected)


def _load_handle(h, state_dict, fqns, sharded: bool, errors: list) -> None:
    xp = get_array_module(h._flat_array)
    names = [[fqns[(id(m), n)] for m, n in e.aliases] for e in h.entries]
    if sharded:
        out = h._flat_array.copy()
        for e, keys in zip(h.entries, names):
            key = next((k for k in keys if k in state_dict), None)
            if key is not None:
                place_piece(h, e, state_dict[key], out, f"'{key}'")
        h._flat_array[...] = out
        _interop.bump_version(h.flat_param)
        if h.config.keep_full or not h.config.shard:
            h.gathered_version = -1  # gather the new shards before the next forward
        return
    # keys that are missing keep their current values (this rank's shard at least)
    if h.config.keep_full or not h.config.shard:
        h.unshard()
        full = h.storage.array.copy()
    else:
        full = xp.zeros(h.padded, dtype=h.dtype)
        lo, hi = h.shard_bounds()
        full[lo:hi] = h._flat_array
    for e, keys in zip(h.entries, names):
        key = next((k for k in keys if k in state_dict), None)
        if key is None:
            continue
        value = state_dict[key]
        if is_piece(value):
            errors.append(
                f"'{key}' is a shard piece: load sharded state dicts whole (with "
                "their metadata) or consolidate them first"
            )
            continue
        arr = as_array(value, xp)
        if tuple(arr.shape) != e.shape:
            errors.append(
                f"size mismatch for {key}: copying a param with shape "
                f"{tuple(arr.shape)} from checkpoint, the shape in current model is "
                f"{e.shape}."
            )
            continue
        full[e.offset : e.offset + e.numel] = arr.reshape(-1)
    h.load_full_flat(full)


def _copy_into(t, value, key, errors) -> None:
    if is_piece(value):
        errors.append(f"'{key}' is a shard piece but the model keeps it whole")
        return
    arr = as_array(value, get_array_module(_interop.array_of(t)))
    if tuple(arr.shape) != tuple(t.shape):
        errors.append(
            f"size mismatch for {key}: copying a param with shape {tuple(arr.shape)} "
            f"from checkpoint, the shape in current model is {tuple(t.shape)}."
        )
        return
    _interop.array_of(t)[...] = arr
    _interop.bump_version(t)
