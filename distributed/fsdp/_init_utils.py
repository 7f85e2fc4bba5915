"""Construction helpers of FSDP units: argument checks, ignored states, and collecting each
unit's parameters into flat-parameter groups."""

from __future__ import annotations

import os

import numpy as np

import ember
from ember import _interop
from ember.nn import Module

from .. import distributed_c10d as c10d
from ._runtime import _UnitConfig
from .api import CPUOffload, ShardingStrategy


def unsupported(param_init_fn) -> None:
    if param_init_fn is not None:
        raise NotImplementedError("FullyShardedDataParallel: param_init_fn is not supported")


def check_cpu_offload(cpu_offload) -> bool:
    """Whether ``cpu_offload`` asks for the parameters on the host."""
    if cpu_offload is None:
        return False
    if not isinstance(cpu_offload, CPUOffload):
        raise TypeError(
            "FullyShardedDataParallel: cpu_offload must be an "
            f"ember.distributed.fsdp.CPUOffload or None, got {type(cpu_offload).__name__}"
        )
    return bool(cpu_offload.offload_params)


_HYBRID = (ShardingStrategy.HYBRID_SHARD, ShardingStrategy._HYBRID_SHARD_ZERO2)


def resolve_groups(strategy: ShardingStrategy, process_group, device_mesh, device_type: str):
    """``(shard_group, replicate_group)`` of a unit; ``replicate_group`` is ``None`` unless
    the strategy is hybrid. As PyTorch: a 2-D mesh's dim 0 replicates and dim 1 shards, and a
    ``process_group`` tuple is ``(intra-host shard group, inter-host replicate group)``."""
    from ..device_mesh import DeviceMesh

    hybrid = strategy in _HYBRID
    name = f"FullyShardedDataParallel({strategy.name})"
    if device_mesh is not None:
        if process_group is not None:
            raise ValueError(f"{name}: pass either process_group or device_mesh, not both")
        if not isinstance(device_mesh, DeviceMesh):
            raise TypeError(
                f"{name}: device_mesh must be a DeviceMesh, got {type(device_mesh).__name__}"
            )
        if hybrid:
            if device_mesh.ndim != 2:
                raise ValueError(
                    f"{name} needs a 2-D device_mesh (dim 0: replicate across hosts, dim 1: "
                    f"shard within a host), got a {device_mesh.ndim}-D mesh of shape "
                    f"{tuple(device_mesh.shape)}"
                )
            return _member(device_mesh.get_group(1), name), _member(device_mesh.get_group(0), name)
        if device_mesh.ndim != 1:
            raise ValueError(
                f"{name} takes a 1-D device_mesh, got a {device_mesh.ndim}-D mesh of shape "
                f"{tuple(device_mesh.shape)} (a 2-D mesh is for HYBRID_SHARD or "
                "_HYBRID_SHARD_ZERO2)"
            )
        return _member(device_mesh.get_group(0), name), None
    if isinstance(process_group, (tuple, list)):
        if not hybrid:
            raise ValueError(
                f"{name}: a (shard_group, replicate_group) tuple as process_group is for "
                "HYBRID_SHARD or _HYBRID_SHARD_ZERO2"
            )
        if len(process_group) != 2:
            raise ValueError(
                f"{name}: process_group must be a (shard_group, replicate_group) pair, got "
                f"{len(process_group)} groups"
            )
        return _member(process_group[0], name), _member(process_group[1], name)
    if not hybrid:
        return process_group, None
    if process_group is not None:
        raise ValueError(
            f"{name}: process_group must be a (shard_group, replicate_group) tuple, got one "
            "group; or pass a 2-D device_mesh"
        )
    # PyTorch derives the hosts from the number of devices per node; ember from the number of
    # ranks per node its launcher gave (LOCAL_WORLD_SIZE, or SLURM's / MPI's): one shard
    # group per host
    from .._runtime import _launch_env

    env = _launch_env.detect(os.environ)
    local = env.local_world_size if env is not None else None
    world = c10d.get_world_size()
    if not local:
        raise ValueError(
            f"{name} cannot tell which ranks share a host: pass device_mesh="
            "init_device_mesh(device, (num_hosts, ranks_per_host)) or "
            "process_group=(shard_group, replicate_group), or launch with LOCAL_WORLD_SIZE set "
            "(torchrun, `ember launch`, SLURM and MPI launchers set the ranks per node)"
        )
    if local <= 0 or world % local:
        raise ValueError(f"{name}: LOCAL_WORLD_SIZE={local} does not divide the world size {world}")
    mesh = DeviceMesh(device_type, np.arange(world).reshape(world // local, local))
    return mesh.get_group(1), mesh.get_group(0)


def _member(group, name: str):
    if c10d.get_rank(group) < 0:
        raise ValueError(f"{name}: this rank ({c10d.get_rank()}) is not a member of {group!r}")
    return group


def check_wrappable(module, wrapper: str) -> None:
    if not isinstance(module, Module):
        raise TypeError(f"{wrapper} expects an nn.Module, got {type(module).__name__}")
    if getattr(module, "_ember_fsdp_unit", False) or getattr(module, "_ember_fsdp_managed", False):
        raise RuntimeError(
            f"{wrapper}: {type(module).__name__} is already wrapped (its parameters are managed "
            "by a FullyShardedDataParallel / ZeroDataParallel unit); wrap each module once"
        )
    if getattr(module, "_ember_ddp", False) or hasattr(module, "require_backward_grad_sync"):
        raise RuntimeError(
            f"{wrapper}: {type(module).__name__} is wrapped in "
            "DistributedDataParallel; use one data-parallel wrapper, not both"
        )


def resolve_ignored(module, ignored_modules, ignored_states):
    mods = list(ignored_modules or [])
    params = []
    for s in ignored_states or []:
        (mods if isinstance(s, Module) else params).append(s)
    mod_ids = set()
    for m in mods:
        if not isinstance(m, Module):
            raise TypeError(f"ignored_modules must hold nn.Modules, got {type(m).__name__}")
        for sub in m.modules():
            mod_ids.add(id(sub))
            params.extend(sub.parameters())
    return frozenset(mod_ids), frozenset(id(p) for p in params)


def collect_params(module: Module, config: _UnitConfig) -> list[list]:
    """The unit's parameters as handle groups: ``[(param, [(module, name), ...]), ...]`` per
    (dtype, device, requires_grad) run, cut into buckets when ``config.bucket_bytes``."""
    order, aliases, seen = [], {}, set()

    def visit(m):
        if id(m) in seen or id(m) in config.ignored_modules:
            return
        seen.add(id(m))
        if getattr(m, "_ember_fsdp_unit", False) and m is not module:
            return  # a nested unit manages its own parameters
        for name, p in m._parameters.items():
            if p is None or id(p) in config.ignored_params:
                continue
            if getattr(p, "_ember_fsdp_flattened", False):
                raise RuntimeError(
                    f"parameter '{name}' of {type(m).__name__} is already flattened into "
                    "another FSDP unit (a parameter shared across units); wrap the modules "
                    "that share it in one unit"
                )
            if id(p) not in aliases:
                aliases[id(p)] = []
                order.append(p)
            aliases[id(p)].append((m, name))
        for child in m._modules.values():
            if child is not None:
                visit(child)

    visit(module)
    for m_id in list(aliases):
        for m, _ in aliases[m_id]:
            if "_ember_fsdp_param_names" not in m.__dict__:
                object.__setattr__(m, "_ember_fsdp_param_names", list(m._parameters))
    groups, current, key, size = [], [], None, 0
    for p in order:
        arr = _interop.array_of(p)
        k = (arr.dtype, str(p.device), p.requires_grad)
        if current and (
            k != key
            or (config.bucket_bytes is not None and size + arr.nbytes > config.bucket_bytes)
        ):
            groups.append(current)
            current, size = [], 0
        current.append((p, aliases[id(p)]))
        size += arr.nbytes
        key = k
        p._ember_fsdp_flattened = True
    if current:
        groups.append(current)
    return groups


def broadcast_states(groups, module: Module, config: _UnitConfig) -> None:
    """Rank 0's parameters and buffers everywhere (``sync_module_states``)."""
    with ember.no_grad():
        # hybrid: the shard groups of the other hosts take rank 0's values too
        pg = None if config.replicate_group is not None else config.process_group
        for g in groups:
            for p, _ in g:
                c10d.broadcast(p, src=0, group=pg)
        for b in module.buffers():
            c10d.broadcast(b, src=0, group=pg)
