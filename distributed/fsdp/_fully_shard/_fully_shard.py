"""``fully_shard`` (PyTorch's FSDP2) and the ``FSDPModule`` methods it adds to a module.

``fully_shard(module)`` turns ``module``'s parameters (those not already managed by a nested
``fully_shard``) into ``Shard(0)`` DTensor parameters and hooks its forward: the pre-hook
all-gathers them (one flat collective per group), the post-hook reshards them when
``reshard_after_forward`` and routes the outputs through an identity autograd function whose
backward gathers them again before the module's gradients are computed; each gradient lands
on the unsharded parameter, and once the group's are all in they are reduce-scattered (mean)
into the sharded parameters' ``.grad``. The root (the outermost module whose forward runs
first) finishes every group at the end of the backward pass.
"""

from __future__ import annotations

import weakref
from typing import Any

import ember
from ember import _interop
from ember.autograd import Function

from ...device_mesh import DeviceMesh
from ...distributed_c10d import get_world_size
from ...tensor import DTensor
from ._api import MixedPrecisionPolicy, OffloadPolicy
from ._param_group import FSDPParamGroup

__all__ = ["FSDPModule", "UnshardHandle", "fully_shard"]

_CLASSES: dict = {}
# id -> (weak reference, fqn) of every parameter a group has taken: one taken twice (tied
# between two groups) would be sharded twice and diverge silently
_TAKEN: dict = {}


class _State:
    """What ``fully_shard`` keeps on a module (not a Module, so not registered as a child)."""

    def __init__(self, group: FSDPParamGroup, mp: MixedPrecisionPolicy) -> None:
        self.group = group
        self.mp = mp
        self.is_root: bool | None = None  # decided at the first forward
        self.subtree: list[_State] = []  # the root's: every state under it, itself first
        self.root: _State | None = None
        self.callback_queued = False


def _state(module) -> _State:
    st = module.__dict__.get("_fsdp_state")
    if st is None:
        raise RuntimeError(f"{type(module).__name__} is not managed by fully_shard")
    return st


# ---- tensors inside args / outputs ---------------------------------------------------------------
def _map(obj, fn):
    if isinstance(obj, ember.Tensor):
        return fn(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_map(o, fn) for o in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map(o, fn) for o in obj)
    if isinstance(obj, dict):
        return type(obj)((k, _map(v, fn)) for k, v in obj.items())
    return obj


def _cast_to(dtype):
    def cast(t):
        return t.to(dtype) if t.is_floating_point() and t.dtype is not dtype else t

    return cast


class _PreBackward(Function):
    """Identity on one output; its backward unshards the group before the module's own
    gradient computation runs."""

    @staticmethod
    def forward(ctx, state, array):
        ctx.state = state
        return array

    @staticmethod
    def backward(ctx, grad):
        st = ctx.state
        root = st.root or st
        if not root.callback_queued:
            root.callback_queued = True
            _interop.queue_engine_callback(lambda: _finish_backward(root))
        st.group.unshard()
        return None, grad


# ---- hooks ---------------------------------------------------------------------------------------
def _lazy_init(module, st: _State) -> None:
    st.is_root, st.root, st.subtree = True, st, [st]
    for m in module.modules():
        sub = m.__dict__.get("_fsdp_state")
        if sub is not None and sub is not st:
            sub.is_root, sub.root = False, st
            st.subtree.append(sub)
    # the root's parameters would be gathered again at once for backward: keep them (PyTorch)
    st.group.reshard_after_forward = False


def _pre_forward(module, args, kwargs):
    st = _state(module)
    if st.is_root is None:
        _lazy_init(module, st)
    if st.is_root:
        for sub in st.subtree:
            sub.group.reduced_this_backward = False
        st.callback_queued = False
    if st.mp.param_dtype is not None and st.mp.cast_forward_inputs:
        cast = _cast_to(st.mp.param_dtype)
        args, kwargs = _map(args, cast), _map(kwargs, cast)
    st.group.unshard()
    return args, kwargs


def _post_forward(module, args, kwargs, output):
    st = _state(module)
    if st.group.reshard_after_forward:
        st.group.reshard()
    if st.mp.output_dtype is not None:
        output = _map(output, _cast_to(st.mp.output_dtype))
    if ember.is_grad_enabled():
        output = _map(output, lambda t: _wrap_output(st, t))
    return output


def _wrap_output(st: _State, t):
    return _PreBackward.apply(st, t) if t.requires_grad else t


def _finish_backward(root: _State) -> None:
    """End of backward: reduce every group whose gradients did not all arrive (unused
    parameters) and reshard."""
    for st in root.subtree:
        g = st.group
        if not g.reduced_this_backward and any(
            p.unsharded is not None and p.unsharded.grad is not None for p in g.params
        ):
            g.post_backward()
        elif g.reshard_after_backward and not st.is_root:
            g.reshard()
        g.reduced_this_backward = False
    root.callback_queued = False


# ---- state dicts --------------------------------------------------------------------------------
def _state_dict_hook(module, state_dict, prefix, local_metadata) -> None:
    """The group's entries become ``Shard(0)`` DTensors of the sharded parameters, as in
    PyTorch (also while the module is unsharded)."""
    g = _state(module).group
    for p in g.params:
        key = prefix + p.fqn
        if key in state_dict:
            keep_vars = state_dict[key] is p.sharded or state_dict[key] is p.unsharded
            local = p.sharded if keep_vars else p.sharded.detach()
            state_dict[key] = DTensor(local, p.spmd_mesh, p.spmd_placements, p.global_shape)


def _load_state_dict_pre_hook(module, state_dict, prefix, *args) -> None:
    """Load into the sharded parameters: a DTensor entry gives its local piece."""
    g = _state(module).group
    g.reshard()
    assign = bool(args and args[0].get("assign_to_params_buffers"))
    for p in g.params:
        key = prefix + p.fqn
        value = state_dict.get(key)
        if isinstance(value, DTensor):
            if tuple(value.shape) != p.global_shape:
                raise ValueError(
                    f"load_state_dict: '{key}' is a DTensor of global shape "
                    f"{tuple(value.shape)}, the parameter's is {p.global_shape}"
                )
            if value.placements != p.spmd_placements:
                value = value.redistribute(value.device_mesh, p.spmd_placements)
            state_dict[key] = value = value.to_local()
        if assign and isinstance(value, ember.Tensor) and value.shape == p.sharded.shape:
            # load_state_dict(assign=True), the way onto a meta model: the group keeps its
            # own sharded parameter and takes the checkpoint's array (no copy)
            p.sharded.data = value.detach()
            state_dict[key] = p.sharded


# ---- the public API ------------------------------------------------------------------------------
class FSDPModule:
    """The methods ``fully_shard`` adds to a module (its class becomes ``FSDP<Class>``)."""

    def reshard(self) -> None:
        """Free the unsharded parameters and register the sharded ones."""
        _state(self).group.reshard()

    def unshard(self, async_op: bool = False):
        """All-gather the parameters now (``async_op`` is accepted; the gather is done on
        return, and the returned handle's ``wait()`` does nothing)."""
        _state(self).group.unshard()
        return UnshardHandle() if async_op else None

    def _fsdp_states(self, recurse: bool):
        mods = self.modules() if recurse else [self]
        return [m.__dict__["_fsdp_state"] for m in mods if "_fsdp_state" in m.__dict__]

    def set_requires_gradient_sync(self, requires_gradient_sync: bool, *, recurse: bool = True):
        """With ``False``, backward accumulates unsharded gradients and skips the
        reduce-scatter (gradient accumulation); the next backward with ``True`` reduces all."""
        for st in self._fsdp_states(recurse):
            st.group.requires_grad_sync = bool(requires_gradient_sync)

    def set_reshard_after_backward(self, reshard_after_backward: bool, *, recurse: bool = True):
        """Whether backward frees the unsharded parameters once the gradients are reduced."""
        for st in self._fsdp_states(recurse):
            st.group.reshard_after_backward = bool(reshard_after_backward)

    def set_gradient_divide_factor(self, factor: float) -> None:
        """Divide the summed gradients by ``factor`` instead of the world size."""
        if not factor > 0:
            raise ValueError(f"set_gradient_divide_factor: factor must be > 0, got {factor}")
        for st in self._fsdp_states(True):
            st.group.divide_factor = float(factor)

    def set_reshard_after_forward(self, reshard_after_forward: bool, *, recurse: bool = True):
        """Whether forward frees the unsharded parameters (non-root modules)."""
        for st in self._fsdp_states(recurse):
            if not st.is_root:
                st.group.reshard_after_forward = bool(reshard_after_forward)


class UnshardHandle:
    """What ``unshard(async_op=True)`` returns; the gather is already done."""

    def wait(self) -> None:
        return None


def _swap_class(module) -> None:
    cls = type(module)
    if cls not in _CLASSES:
        _CLASSES[cls] = type(f"FSDP{cls.__name__}", (FSDPModule, cls), {})
    module.__class__ = _CLASSES[cls]


def fully_shard(
    module,
    *,
    mesh: DeviceMesh | None = None,
    reshard_after_forward: bool | None = None,
    mp_policy: MixedPrecisionPolicy | None = None,
    offload_policy: OffloadPolicy | None = None,
    ignored_params: set | None = None,
):
    """Shard ``module``'s parameters over ``mesh`` (FSDP2, ZeRO-3) and return ``module``,
    now an ``FSDPModule``.

    Args:
        module (nn.Module): apply to the inner blocks first, then to the root.
        mesh (DeviceMesh, optional): a 1-d mesh to shard over (the default: the whole
            world), or a 2-d mesh for HSDP: parameters are sharded over dim 1 and replicated
            over dim 0 (``(Replicate(), Shard(0))`` placements), gradients reduce-scattered
            over dim 1 and all-reduced over dim 0. Parameters that ``parallelize_module``
            made DTensors on ``mesh["tp"]`` (a slice of the same named mesh, after the
            data-parallel dims) are sharded on their TP piece and become DTensors on the
            ``(dp..., tp)`` mesh, as in PyTorch (docs/sharding.md, "FSDP2 over tensor
            parallelism").
        reshard_after_forward (bool, optional): free the gathered parameters after forward
            (gather again in backward). ``None`` (default) means ``True``; the root keeps
            them either way, as in PyTorch.
        mp_policy (MixedPrecisionPolicy, optional): parameter, reduction and output dtypes.
        offload_policy (OffloadPolicy, optional): ``CPUOffloadPolicy()`` keeps the shards and
            their gradients on the CPU.
        ignored_params (set of Parameter, optional): parameters left as they are (neither
            sharded nor reduced).

    Every rank must build the same module (same seed): each keeps its own rows of its own
    copy, as PyTorch does.
    """
    if not isinstance(module, ember.nn.Module):
        raise TypeError(f"fully_shard: expected an nn.Module, got {type(module).__name__}")
    if "_fsdp_state" in module.__dict__:
        raise ValueError(f"fully_shard: {type(module).__name__} is already fully_shard-ed")
    mp_policy = MixedPrecisionPolicy() if mp_policy is None else mp_policy
    offload_policy = OffloadPolicy() if offload_policy is None else offload_policy
    if not isinstance(mp_policy, MixedPrecisionPolicy):
        raise TypeError(f"fully_shard: mp_policy must be a MixedPrecisionPolicy, got {mp_policy!r}")
    if not isinstance(offload_policy, OffloadPolicy):
        raise TypeError(
            f"fully_shard: offload_policy must be an OffloadPolicy, got {offload_policy!r}"
        )
    if reshard_after_forward is None:
        reshard_after_forward = True
    if not isinstance(reshard_after_forward, bool):
        raise NotImplementedError(
            "fully_shard: reshard_after_forward must be a bool (resharding to a smaller "
            f"world is not supported), got {reshard_after_forward!r}"
        )
    mesh = _default_mesh(module) if mesh is None else mesh
    if not isinstance(mesh, DeviceMesh):
        raise TypeError(f"fully_shard: mesh must be a DeviceMesh, got {type(mesh).__name__}")
    if mesh.ndim not in (1, 2):
        raise ValueError(
            f"fully_shard: mesh must be 1-d (FSDP) or 2-d (HSDP: replicate dim 0, shard dim 1), "
            f"got a {mesh.ndim}-d mesh of shape "
            f"{tuple(mesh.shape)}"
        )
    ignored = {id(p) for p in (ignored_params or ())}
    params = [t for t in _managed_params(module) if id(t[0]._parameters[t[1]]) not in ignored]
    originals = [t[0]._parameters[t[1]] for t in params]
    _check_not_taken(originals, [t[2] for t in params])
    group = FSDPParamGroup(params, mesh, mp_policy, offload_policy)
    for p, t in zip(originals, params):
        _TAKEN[id(p)] = (weakref.ref(p), t[2])
    group.reshard_after_forward = reshard_after_forward
    module.__dict__["_fsdp_state"] = _State(group, mp_policy)
    module.register_forward_pre_hook(_pre_forward, with_kwargs=True)
    module.register_forward_hook(_post_forward, with_kwargs=True)
    module.register_state_dict_post_hook(_state_dict_hook)
    module.register_load_state_dict_pre_hook(_load_state_dict_pre_hook)
    _swap_class(module)
    return module


def _check_not_taken(params: list, fqns: list[str]) -> None:
    for p, fqn in zip(params, fqns):
        seen = _TAKEN.get(id(p))
        if seen is not None and seen[0]() is p:
            raise ValueError(
                f"fully_shard: parameter '{fqn}' is already managed by another fully_shard "
                f"group (as '{seen[1]}'); a parameter shared between groups is not supported: "
                "apply fully_shard to a module that holds every use of it"
            )


def _default_mesh(module) -> DeviceMesh:
    p = next(iter(module.parameters()), None)
    kind = p.device.type if p is not None else "cpu"
    if kind == "meta":  # built on meta: the mesh of the device it will get (to_empty)
        kind = "cuda" if ember.cuda.is_available() else "cpu"
    return DeviceMesh(kind, list(range(get_world_size())))


def _managed_params(module) -> list[tuple[Any, str, str]]:
    """(owner module, attribute name, fqn) of the parameters not under a nested group."""
    out, seen = [], set()

    def visit(m, prefix: str) -> None:
        for name, p in m._parameters.items():
            if p is None or id(p) in seen:
                continue
            seen.add(id(p))
            out.append((m, name, prefix + name))
        for cname, child in m._modules.items():
            if child is not None and "_fsdp_state" not in child.__dict__:
                visit(child, f"{prefix}{cname}.")

    visit(module, "")
    return out
