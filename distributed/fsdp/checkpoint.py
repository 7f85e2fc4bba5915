"""Sharded checkpoints of FSDP / ZeRO models: one file per rank plus an index.

Each rank writes its own ``shard-RRRRR-of-NNNNN.ember`` with ``ember.save`` (atomic: a
temporary file, fsync, rename) holding the sharded model and optimizer state dicts; after a
barrier rank 0 writes ``index.json`` (atomically too), which marks the checkpoint complete.
All of it goes to a new staging directory beside the target, exchanged with the previous
checkpoint only once complete (``_swap``): a re-save killed at any point keeps the previous
checkpoint loadable.
Every file carries the checkpoint's id, so shards of different saves never mix silently.

``load_sharded_checkpoint`` reads them back on any number of ranks (each rank its own shard
when the number matches, else all of them, consolidated and re-sharded);
``load_full_state_dicts`` consolidates all shards into full, name-keyed state dicts in one
process (no process group needed), which load on any number of ranks, or into an unwrapped
model (with ``FullyShardedDataParallel.rekey_optim_state_dict`` for a plain optimizer).
"""

from __future__ import annotations

import json
import os
import re
import uuid

import numpy as np

import ember
from ember import _interop, _tempfiles

from .. import distributed_c10d as c10d
from .._objects import object_from_rank0
from . import _swap
from ._state_dict import SHARD_META, as_array, is_piece
from .api import StateDictType
from .fully_sharded_data_parallel import FullyShardedDataParallel as FSDP

__all__ = [
    "save_sharded_checkpoint",
    "load_sharded_checkpoint",
    "load_full_state_dicts",
    "consolidate_state_dicts",
]

INDEX = "index.json"
_FORMAT = "ember.fsdp.sharded/1"
_SHARD_RE = re.compile(r"^shard-\d{5}-of-\d{5}\.ember$")


def _shard_file(rank: int, world: int) -> str:
    return f"shard-{rank:05d}-of-{world:05d}.ember"


def save_sharded_checkpoint(checkpoint_dir: str, model, optimizer=None, extra=None) -> str:
    """Every rank writes its shard of ``model`` (and ``optimizer``) state; returns the id.

    ``extra`` (plain data: numbers, strings, tensors, ...) is stored with every shard.
    The checkpoint is written into a new sibling directory and moved into place once complete,
    so a save killed at any point leaves the previous checkpoint in ``checkpoint_dir``
    loadable; staging directories of killed saves are removed by the next save.
    """
    rank, world = c10d.get_rank(), c10d.get_world_size()
    final = os.path.abspath(checkpoint_dir)
    cid, staging = object_from_rank0(_begin(final) if rank == 0 else None)
    with FSDP.state_dict_type(model, StateDictType.SHARDED_STATE_DICT):
        msd = model.state_dict()
        osd = FSDP.optim_state_dict(model, optimizer) if optimizer is not None else None
    payload = {
        "format": _FORMAT,
        "checkpoint_id": cid,
        "rank": rank,
        "world_size": world,
        "model": dict(msd),
        "optim": osd,
        "extra": extra,
    }
    ember.save(payload, os.path.join(staging, _shard_file(rank, world)))
    c10d.barrier()
    if rank == 0:
        index = {
            "format": _FORMAT,
            "checkpoint_id": cid,
            "world_size": world,
            "files": [_shard_file(r, world) for r in range(world)],
        }
        tmp = os.path.join(staging, f".{INDEX}.{cid}.tmp")
        with open(tmp, "w") as f:
            json.dump(index, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(staging, INDEX))
        _swap.install(staging, final, _is_ours)
    c10d.barrier()
    return cid


def _begin(final: str) -> tuple[str, str]:
    """Rank 0: recover from a save killed mid-swap, remove stale staging directories, and
    create this save's (a sibling of ``final``, so the final rename stays on one filesystem)."""
    parent = os.path.dirname(final)
    if os.path.lexists(final) and not os.path.isdir(final):
        raise FileExistsError(f"save_sharded_checkpoint: {final} exists and is not a directory")
    os.makedirs(parent, exist_ok=True)
    _swap.recover(final, INDEX)
    _tempfiles.remove_stale(parent)
    staging = _tempfiles.temp_path(final, "partial")
    os.mkdir(staging)
    return uuid.uuid4().hex, staging


def _is_ours(name: str) -> bool:
    """Files a sharded save writes (everything else in the directory is carried over)."""
    return (
        name == INDEX
        or _SHARD_RE.match(name) is not None
        or (name.startswith(".") and name.endswith(".tmp"))
    )


def _read_index(checkpoint_dir: str) -> dict:
    path = os.path.join(_swap.resolve(checkpoint_dir, INDEX), INDEX)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{checkpoint_dir} has no {INDEX}: not a sharded checkpoint, or its save did not finish"
        )
    with open(path) as f:
        index = json.load(f)
    if index.get("format") != _FORMAT:
        raise RuntimeError(f"{path}: unknown checkpoint format {index.get('format')!r}")
    return index


def _read_shard(checkpoint_dir: str, index: dict, rank: int) -> dict:
    world = index["world_size"]
    path = os.path.join(_swap.resolve(checkpoint_dir, INDEX), _shard_file(rank, world))
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"sharded checkpoint {checkpoint_dir}: shard file "
            f"{_shard_file(rank, world)} of rank {rank} is missing"
        )
    payload = ember.load(path)
    if payload.get("checkpoint_id") != index["checkpoint_id"]:
        raise RuntimeError(
            f"mismatched shard checkpoint: {_shard_file(rank, world)} belongs to checkpoint "
            f"{payload.get('checkpoint_id')} but {INDEX} names checkpoint "
            f"{index['checkpoint_id']} (shard files of different saves were mixed)"
        )
    if payload.get("rank") != rank or payload.get("world_size") != world:
        raise RuntimeError(
            f"mismatched shard checkpoint: {_shard_file(rank, world)} says it is "
            f"rank {payload.get('rank')} of {payload.get('world_size')}"
        )
    return payload


def load_sharded_checkpoint(checkpoint_dir: str, model, optimizer=None):
    """Load the checkpoint into ``model`` (and ``optimizer``); returns the saved ``extra``.

    On the number of ranks it was saved with, each rank reads only its own shard. On any other
    number, each rank consolidates all shards (:func:`load_full_state_dicts`) and loads the
    full form, which FSDP and ZeRO re-shard for this job.
    """
    index = _read_index(checkpoint_dir)
    rank, world = c10d.get_rank(), c10d.get_world_size()
    if index["world_size"] != world:
        full = load_full_state_dicts(checkpoint_dir)
        if optimizer is not None and full["optim"] is None:
            raise RuntimeError(f"sharded checkpoint {checkpoint_dir} holds no optimizer state")
        with FSDP.state_dict_type(model, StateDictType.FULL_STATE_DICT):
            model.load_state_dict(full["model"])
        if optimizer is not None:
            FSDP.optim_state_dict_to_load(model, optimizer, full["optim"], load_directly=True)
        return full["extra"]
    payload = _read_shard(checkpoint_dir, index, rank)
    model.load_state_dict(payload["model"])
    if optimizer is not None:
        if payload["optim"] is None:
            raise RuntimeError(f"sharded checkpoint {checkpoint_dir} holds no optimizer state")
        optimizer.load_state_dict(FSDP.optim_state_dict_to_load(model, optimizer, payload["optim"]))
    return payload["extra"]


def load_full_state_dicts(checkpoint_dir: str) -> dict:
    """Consolidate a sharded checkpoint into ``{"model": ..., "optim": ..., "extra": ...}``
    with full, name-keyed state dicts (in this process; no process group needed)."""
    index = _read_index(checkpoint_dir)
    payloads = [_read_shard(checkpoint_dir, index, r) for r in range(index["world_size"])]
    model = consolidate_state_dicts([p["model"] for p in payloads])
    optim = None
    if payloads[0]["optim"] is not None:
        osds = [p["optim"] for p in payloads]
        names = list(osds[0]["state"])
        state = {}
        for name in names:
            keys = list(osds[0]["state"][name])
            state[name] = {
                k: _assemble([o["state"][name][k] for o in osds], f"{name}.{k}") for k in keys
            }
        optim = {"state": state, "param_groups": osds[0]["param_groups"]}
    return {"model": model, "optim": optim, "extra": payloads[0]["extra"]}


def consolidate_state_dicts(shards: list[dict]) -> dict:
    """Full state dict from the sharded model state dicts of ranks ``0..N-1`` (in order)."""
    if not shards:
        raise ValueError("consolidate_state_dicts: no shards given")
    for r, sd in enumerate(shards):
        meta = sd.get(SHARD_META)
        if not meta or meta.get("rank") != r or meta.get("world_size") != len(shards):
            raise RuntimeError(
                f"consolidate_state_dicts: shard {r} of {len(shards)} has metadata {meta!r}"
            )
    out = {}
    for key in shards[0]:
        if key == SHARD_META:
            continue
        out[key] = _assemble([sd.get(key) for sd in shards], key)
    return out


def _assemble(values: list, what: str):
    """One full value from the per-rank values of one key (pieces or replicated values)."""
    if not is_piece(values[0]):
        return values[0]
    shape = tuple(values[0]["shape"])
    numel = int(np.prod(shape, dtype=np.int64))
    local0 = as_array(values[0]["local_shard"])
    out = np.zeros(numel, dtype=local0.dtype)
    seen = np.zeros(numel, dtype=bool)
    for r, v in enumerate(values):
        if not is_piece(v) or tuple(v["shape"]) != shape:
            raise RuntimeError(
                f"mismatched shards for '{what}': rank {r} holds "
                f"{v if not is_piece(v) else tuple(v['shape'])}, rank 0 a piece "
                f"of shape {shape}"
            )
        local = np.asarray(as_array(v["local_shard"])).reshape(-1)
        a = int(v["offset"])
        if a < 0 or a + local.size > numel:
            raise RuntimeError(
                f"mismatched shards for '{what}': rank {r}'s piece "
                f"[{a}, {a + local.size}) lies outside {numel} elements"
            )
        out[a : a + local.size] = local
        seen[a : a + local.size] = True
    if not seen.all():
        gap = int(np.argmin(seen))
        raise RuntimeError(
            f"incomplete shards for '{what}': element {gap} of {numel} is in no rank's piece"
        )
    return _interop.wrap(out.reshape(shape))
