"""Construction helpers of FSDP units: argument checks, ignored states, and collecting each
unit's parameters into flat-parameter groups."""

from __future__ import annotations

import ember
from ember import _interop
from ember.nn import Module

from .. import distributed_c10d as c10d
from ._runtime import _UnitConfig


def unsupported(cpu_offload, param_init_fn, use_orig_params, device_mesh):
    if cpu_offload is not None and getattr(cpu_offload, "offload_params", False):
        raise NotImplementedError(
            "FullyShardedDataParallel: CPUOffload(offload_params=True) is not supported"
        )
    for name, value in (("param_init_fn", param_init_fn), ("device_mesh", device_mesh)):
        if value is not None:
            raise NotImplementedError(f"FullyShardedDataParallel: {name} is not supported")
    if use_orig_params:
        raise NotImplementedError(
            "FullyShardedDataParallel: use_orig_params=True is not "
            "supported; build the optimizer over model.parameters() "
            "(the flat parameters) after wrapping"
        )


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
        for g in groups:
            for p, _ in g:
                c10d.broadcast(p, src=0, group=config.process_group)
        for b in module.buffers():
            c10d.broadcast(b, src=0, group=config.process_group)
