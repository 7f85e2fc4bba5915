"""Model and optimizer state dicts in the form distributed checkpoints save and reshard
(``torch.distributed.checkpoint.state_dict``).

Keys are the unwrapped model's parameter names for every parallelism: a plain model, DDP
(``module.`` dropped) and FSDP (original names; each rank's values are its flat-parameter
pieces unless ``full_state_dict``). Optimizer state is keyed by those names too
(``{"state": {name: {...}}, "param_groups": [{..., "params": [names]}]}``), so a checkpoint
saved under one parallelism loads under another. Typical use::

    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.load({"model": model_sd, "optim": optim_sd}, checkpoint_id=path)
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import ember
from ember.nn import Module

from ..fsdp._state_dict import SHARD_META, units_of
from ._dtensor_state import (
    dtensor_params,
    from_dtensors,
    full_tensors,
    reshard_fully_shard,
    to_dtensors,
)

__all__ = [
    "StateDictOptions",
    "get_model_state_dict",
    "get_optimizer_state_dict",
    "get_state_dict",
    "set_model_state_dict",
    "set_optimizer_state_dict",
    "set_state_dict",
]


@dataclass
class StateDictOptions:
    """PyTorch's options.

    ``full_state_dict``: FSDP models give whole tensors (gathered) instead of this rank's
    pieces. ``cpu_offload``: tensors are copied to the host. ``ignore_frozen_params``: leave out
    parameters with ``requires_grad=False`` (plain and DDP models). ``strict``: loading raises
    on missing or unexpected keys.
    """

    full_state_dict: bool = False
    cpu_offload: bool = False
    ignore_frozen_params: bool = False
    keep_submodule_prefixes: bool = True
    strict: bool = True
    broadcast_from_rank0: bool = False
    flatten_optimizer_state_dict: bool = False


def _is_fsdp(model: Module) -> bool:
    return bool(units_of(model))


def _unwrap(model: Module) -> Module:
    """The module under DDP / DataParallel wrappers."""
    from ember.nn.parallel import DataParallel, DistributedDataParallel

    while isinstance(model, (DistributedDataParallel, DataParallel)):
        model = model.module
    return model


def _options(options, allow_broadcast: bool = False) -> StateDictOptions:
    if options is None:
        return StateDictOptions()
    if not isinstance(options, StateDictOptions):
        raise TypeError(f"options must be a StateDictOptions, got {type(options).__name__}")
    if options.flatten_optimizer_state_dict:
        raise NotImplementedError("StateDictOptions: flatten_optimizer_state_dict is not supported")
    if options.broadcast_from_rank0 and not allow_broadcast:
        raise NotImplementedError(
            "StateDictOptions: broadcast_from_rank0 is supported by set_optimizer_state_dict "
            "and set_model_state_dict only"
        )
    if options.broadcast_from_rank0 and not options.full_state_dict:
        raise ValueError("full_state_dict must be True when broadcast_from_rank0 is True.")
    return options


def _broadcast_from_rank0(model: Module, state_dict: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's whole tensors on every rank, one at a time (the other ranks' dicts are
    ignored, as in PyTorch): where the model holds a DTensor parameter, only this rank's piece
    of it is kept, so no rank holds more than one whole tensor at once."""
    import ember.distributed as dist

    from ..tensor import distribute_tensor

    rank0 = dist.get_rank() == 0
    meta = [
        [(k, tuple(v.shape), v.dtype) for k, v in state_dict.items()] if rank0 else None
    ]  # keys, shapes and dtypes first, so every rank allocates the same buffers
    dist.broadcast_object_list(meta, src=0)
    own = {} if _is_fsdp(model) else dtensor_params(_unwrap(model))
    out: dict[str, Any] = {}
    for key, shape, dtype in meta[0]:
        if rank0:
            buf = state_dict[key].detach().contiguous().clone()
        else:
            buf = ember.empty(shape, dtype=dtype)
        dist.broadcast(buf, src=0)
        p = own.get(key)
        out[key] = (
            distribute_tensor(buf, p.device_mesh, p.placements, src_data_rank=None)
            if p is not None
            else buf
        )
    return out


def _fsdp_context(model: Module, full: bool):
    from ..fsdp import FullyShardedDataParallel as FSDP
    from ..fsdp import StateDictType

    kind = StateDictType.FULL_STATE_DICT if full else StateDictType.SHARDED_STATE_DICT
    return FSDP.state_dict_type(model, kind)


# PyTorch's words when an optimizer-only call gets no optimizer
_NO_OPTIMIZERS = "Optimizers are not passed in but optim_only is set to True."


def _optimizers(optimizers, allow_empty: bool = False) -> list:
    """``optimizers`` as a list; an empty one is refused (PyTorch's RuntimeError) unless the
    caller also handles the model (``get_state_dict(model, [])``)."""
    if isinstance(optimizers, ember.optim.Optimizer):
        return [optimizers]
    if isinstance(optimizers, Iterable) and not isinstance(optimizers, (str, bytes)):
        out = list(optimizers)
        if not out:
            if allow_empty:
                return out
            raise RuntimeError(_NO_OPTIMIZERS)
        if all(isinstance(o, ember.optim.Optimizer) for o in out):
            return out
    raise TypeError(f"optimizers must be an Optimizer or a list of them, got {optimizers!r}")


def _offload(value):
    if isinstance(value, ember.Tensor):
        return value.cpu()
    if isinstance(value, dict):
        return {k: _offload(v) for k, v in value.items()}
    return value


# ---- model ----------------------------------------------------------------------------------
def get_model_state_dict(
    model: Module, *, submodules=None, options: StateDictOptions | None = None
) -> dict[str, Any]:
    """The model's state dict under its unwrapped names (FSDP: this rank's pieces unless
    ``options.full_state_dict``)."""
    if submodules is not None:
        raise NotImplementedError("get_model_state_dict: submodules is not supported")
    options = _options(options)
    if _is_fsdp(model):
        if options.ignore_frozen_params:
            raise NotImplementedError("ignore_frozen_params is not supported for FSDP models")
        with _fsdp_context(model, options.full_state_dict):
            sd = dict(model.state_dict())
    else:
        inner = _unwrap(model)
        reshard_fully_shard(inner)
        sd = dict(inner.state_dict())
        if options.ignore_frozen_params:
            for name, p in inner.named_parameters():
                if not p.requires_grad:
                    sd.pop(name, None)
        # DTensor parameters (tensor parallel, fully_shard) as DTensors, as PyTorch
        sd = to_dtensors(sd, dtensor_params(inner), optim=False)
        if options.full_state_dict:
            sd = full_tensors(sd, optim=False)
    return _offload(sd) if options.cpu_offload else sd


def set_model_state_dict(
    model: Module, model_state_dict: dict[str, Any], *, options: StateDictOptions | None = None
):
    """Load ``model_state_dict`` (from :func:`get_model_state_dict`, filled by ``load``);
    returns the missing and unexpected keys."""
    options = _options(options, allow_broadcast=True)
    strict = options.strict and not options.ignore_frozen_params
    if options.broadcast_from_rank0:
        model_state_dict = _broadcast_from_rank0(model, model_state_dict)
    if _is_fsdp(model):
        with _fsdp_context(model, SHARD_META not in model_state_dict):
            return model.load_state_dict(model_state_dict, strict=strict)
    inner = _unwrap(model)
    reshard_fully_shard(inner)
    local = from_dtensors(model_state_dict, dtensor_params(inner), optim=False)
    # a model built on the meta device takes the tensors themselves, as in PyTorch
    assign = any(p.is_meta for p in inner.parameters())
    return inner.load_state_dict(local, strict=strict, assign=assign)


# ---- optimizer ------------------------------------------------------------------------------
def _init_state(model: Module, optim) -> None:
    """Create the optimizer's state (as PyTorch does: one step with zero gradients and a zero
    learning rate), so an optimizer that has not stepped yet has state to load into."""
    if optim.state:
        return
    params = [p for g in optim.param_groups for p in g["params"]]
    given = [p for p in params if p.grad is None]
    for p in given:
        p.grad = ember.zeros_like(p)
    lrs = [g["lr"] for g in optim.param_groups]
    try:
        for g in optim.param_groups:
            g["lr"] = 0.0
        with ember.no_grad():
            optim.step()
    finally:
        for g, lr in zip(optim.param_groups, lrs):
            g["lr"] = lr
        for p in given:
            p.grad = None


def _init_optim_state(optim) -> None:
    """PyTorch's private helper of the same name, which its FSDP2 example calls before loading
    an optimizer state dict: create the state as :func:`set_optimizer_state_dict` does, unless
    the optimizer has state or gradients already (then a step would change the parameters)."""
    if any(p.grad is not None for g in optim.param_groups for p in g["params"]):
        return
    _init_state(None, optim)


def _names_by_id(model: Module) -> dict:
    return {id(p): n for n, p in _unwrap(model).named_parameters(remove_duplicate=False)}


def _one_optim_state_dict(model: Module, optim, full: bool) -> dict:
    if _is_fsdp(model):
        from ..fsdp import FullyShardedDataParallel as FSDP

        with _fsdp_context(model, full):
            osd = FSDP.optim_state_dict(model, optim)
        osd.pop(SHARD_META, None)
        return osd
    reshard_fully_shard(_unwrap(model))
    names = _names_by_id(model)
    osd = optim.state_dict()
    order = [p for g in optim.param_groups for p in g["params"]]
    missing = [i for i, p in enumerate(order) if id(p) not in names]
    if missing:
        raise ValueError(
            f"get_optimizer_state_dict: the optimizer's parameters {missing} do not belong to "
            "the model"
        )
    key = [names[id(p)] for p in order]
    state = {key[i]: dict(v) for i, v in osd["state"].items()}
    groups = []
    for g in osd["param_groups"]:
        new = {k: v for k, v in g.items() if k not in ("params", "param_names")}
        new["params"] = [key[i] for i in g["params"]]
        groups.append(new)
    state = to_dtensors(state, dtensor_params(_unwrap(model)), optim=True)
    if full:
        state = full_tensors(state, optim=True)
    return {"state": state, "param_groups": groups}


def get_optimizer_state_dict(
    model: Module, optimizers, *, submodules=None, options: StateDictOptions | None = None
) -> dict[str, Any]:
    """The optimizers' state keyed by parameter names (FSDP: this rank's pieces unless
    ``options.full_state_dict``); an optimizer that has not stepped gets its state created."""
    if submodules is not None:
        raise NotImplementedError("get_optimizer_state_dict: submodules is not supported")
    options = _options(options)
    state: dict = {}
    groups: list = []
    for optim in _optimizers(optimizers):
        _init_state(model, optim)
        osd = _one_optim_state_dict(model, optim, options.full_state_dict)
        state.update(osd["state"])
        groups.extend(osd["param_groups"])
    out = {"state": state, "param_groups": groups}
    if _is_fsdp(model) and not options.full_state_dict:
        from .. import distributed_c10d as c10d

        out[SHARD_META] = {"rank": c10d.get_rank(), "world_size": c10d.get_world_size()}
    return _offload(out) if options.cpu_offload else out


def set_optimizer_state_dict(
    model: Module,
    optimizers,
    optim_state_dict: dict[str, Any],
    *,
    options: StateDictOptions | None = None,
) -> None:
    """Load name-keyed optimizer state (from :func:`get_optimizer_state_dict`, filled by
    ``load``) into ``optimizers``; with ``broadcast_from_rank0`` only rank 0's dict is read
    (sent whole to the other ranks, which then keep their pieces)."""
    optimizers = _optimizers(optimizers)  # (an empty list is refused before the dict is read)
    options = _options(options, allow_broadcast=True)
    if options.broadcast_from_rank0:
        from .._objects import object_from_rank0

        optim_state_dict = object_from_rank0(optim_state_dict)
    for key in ("state", "param_groups"):
        if key not in optim_state_dict:
            raise KeyError(f"set_optimizer_state_dict: the state dict has no {key!r}")
    groups = list(optim_state_dict["param_groups"])
    fsdp = _is_fsdp(model)
    if not fsdp:
        reshard_fully_shard(_unwrap(model))
    names = None if fsdp else _names_by_id(model)
    for optim in _optimizers(optimizers):
        mine, groups = groups[: len(optim.param_groups)], groups[len(optim.param_groups) :]
        if len(mine) != len(optim.param_groups):
            raise ValueError(
                f"set_optimizer_state_dict: the state dict has too few parameter groups for "
                f"an optimizer with {len(optim.param_groups)}"
            )
        wanted = {n for g in mine for n in g["params"]}
        osd = {
            "state": {k: v for k, v in optim_state_dict["state"].items() if k in wanted},
            "param_groups": mine,
        }
        if fsdp:
            from ..fsdp import FullyShardedDataParallel as FSDP

            if SHARD_META in optim_state_dict:
                osd[SHARD_META] = optim_state_dict[SHARD_META]
            with _fsdp_context(model, SHARD_META not in osd):
                optim.load_state_dict(FSDP.optim_state_dict_to_load(model, optim, osd))
            continue
        order = [names[id(p)] for g in optim.param_groups for p in g["params"]]
        index = {n: i for i, n in enumerate(order)}
        osd["state"] = from_dtensors(osd["state"], dtensor_params(_unwrap(model)), optim=True)
        unknown = sorted(wanted - set(index))
        if unknown:
            raise ValueError(
                f"set_optimizer_state_dict: parameters {unknown} of the state dict are not "
                "the optimizer's"
            )
        state = {index[k]: v for k, v in osd["state"].items()}
        new_groups = []
        for g, own in zip(mine, optim.param_groups):
            if len(g["params"]) != len(own["params"]):
                raise ValueError(
                    f"set_optimizer_state_dict: a parameter group of {len(g['params'])} "
                    f"parameters for an optimizer group of {len(own['params'])}"
                )
            new_groups.append({**g, "params": [index[n] for n in g["params"]]})
        optim.load_state_dict({"state": state, "param_groups": new_groups})


# ---- both -----------------------------------------------------------------------------------
def get_state_dict(
    model: Module, optimizers, *, submodules=None, options: StateDictOptions | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(get_model_state_dict(model), get_optimizer_state_dict(model, optimizers))``; with no
    optimizers (``[]``) the second is ``{}``, as in PyTorch."""
    model_sd = get_model_state_dict(model, submodules=submodules, options=options)
    if not _optimizers(optimizers, allow_empty=True):
        return model_sd, {}
    optim_sd = get_optimizer_state_dict(model, optimizers, submodules=submodules, options=options)
    return model_sd, optim_sd


def set_state_dict(
    model: Module,
    optimizers,
    *,
    model_state_dict: dict[str, Any],
    optim_state_dict: dict[str, Any],
    options: StateDictOptions | None = None,
):
    """Load both; returns the model's missing and unexpected keys. With no optimizers
    (``[]``) ``optim_state_dict`` is ignored, as in PyTorch (an empty ``model_state_dict``
    then is an error: nothing would be loaded)."""
    if not _optimizers(optimizers, allow_empty=True):
        if not model_state_dict:
            raise RuntimeError(_NO_OPTIMIZERS)
        return set_model_state_dict(model, model_state_dict, options=options)
    keys = set_model_state_dict(model, model_state_dict, options=options)
    set_optimizer_state_dict(model, optimizers, optim_state_dict, options=options)
    return keys
