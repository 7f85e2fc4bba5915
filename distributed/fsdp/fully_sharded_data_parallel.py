"""``FullyShardedDataParallel``: PyTorch's FSDP (ZeRO-3) on ember's collectives.

Each unit (the wrapped module, and every submodule the ``auto_wrap_policy`` picks) flattens
the parameters it owns into one flat parameter per dtype and keeps only this rank's shard.
Forward: all-gather, run, free (``FULL_SHARD``). Backward: the pre-backward hook gathers again
(and prefetches the next unit), the unit's ``_Unflatten`` node reduce-scatters the gradient
and frees the parameters; when backward ends, the root waits for the reductions and
accumulates the averaged shards into ``flat_param.grad``. Optimizers are built over
``model.parameters()`` after wrapping, so their state is sharded too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import ember
from ember.nn import Module

from .. import distributed_c10d as c10d
from . import _mixed_precision as _mp
from ._flat_param import FlatParamHandle
from ._init_utils import (
    broadcast_states,
    check_cpu_offload,
    check_wrappable,
    collect_params,
    resolve_groups,
    resolve_ignored,
    unsupported,
)
from ._runtime import RootState, _UnitConfig, config_for, register_pre_backward
from ._runtime import clip_grad_norm_ as _clip_grad_norm
from ._state_dict_methods import _StateDictMethods
from .api import (
    BackwardPrefetch,
    CPUOffload,
    FullOptimStateDictConfig,
    FullStateDictConfig,
    MixedPrecision,
    ShardingStrategy,
    StateDictSettings,
    StateDictType,
)
from .wrap import _as_policy, _recursive_wrap

__all__ = ["FullyShardedDataParallel"]


class FullyShardedDataParallel(_StateDictMethods, Module):
    r"""Shard a module's parameters, gradients and optimizer state across the ranks.

    Args:
        module (nn.Module): the module to wrap (its parameters must be on their device).
        process_group: the group to shard over (default: the world).
        sharding_strategy (ShardingStrategy): ``FULL_SHARD`` (default), ``SHARD_GRAD_OP`` or
            ``NO_SHARD``.
        auto_wrap_policy: makes submodules their own units: a ``ModuleWrapPolicy``, a
            ``functools.partial(size_based_auto_wrap_policy, min_num_params=...)``, any
            ``policy(module, recurse, nonwrapped_numel)`` callable, or a set of module classes.
        backward_prefetch (BackwardPrefetch or None): when to all-gather the next unit in
            backward (default ``BACKWARD_PRE``).
        forward_prefetch (bool): all-gather the next unit while the current one runs forward
            (order taken from the previous iteration).
        ignored_modules (iterable of nn.Module): modules whose parameters stay ordinary
            (neither sharded nor reduced).
        sync_module_states (bool): broadcast parameters and buffers from rank 0 at wrap time.
        mixed_precision (MixedPrecision or None): compute in ``param_dtype`` (the gathered
            parameters are cast; the sharded parameters the optimizer steps keep their
            dtype), reduce gradients in ``reduce_dtype``, cast buffers to ``buffer_dtype``.
        cpu_offload (CPUOffload or None): ``CPUOffload(offload_params=True)`` keeps the shards
            and their gradients on the host (the optimizer steps there).
        use_orig_params (bool): ``parameters()`` yields the original parameters, each a 1-D
            view of its part of this rank's flat shard (numel 0 when none of it is here),
            so optimizers can have per-parameter groups.
        device_mesh (DeviceMesh or None): a 1-D mesh to shard over, or for ``HYBRID_SHARD``
            a 2-D mesh (dim 0 replicate, dim 1 shard); instead of ``process_group``, which
            for ``HYBRID_SHARD`` is a ``(shard_group, replicate_group)`` tuple.
        ignored_states: parameters or modules to leave unsharded (as ``ignored_modules``).
        param_init_fn, device_id, limit_all_gathers: accepted for PyTorch compatibility;
            ``param_init_fn`` is not implemented.
    """

    def __init__(
        self,
        module: Module,
        process_group=None,
        sharding_strategy: ShardingStrategy | None = None,
        cpu_offload: CPUOffload | None = None,
        auto_wrap_policy=None,
        backward_prefetch: BackwardPrefetch | None = BackwardPrefetch.BACKWARD_PRE,
        mixed_precision: MixedPrecision | None = None,
        ignored_modules: Iterable[Module] | None = None,
        param_init_fn=None,
        device_id=None,
        sync_module_states: bool = False,
        forward_prefetch: bool = False,
        limit_all_gathers: bool = True,
        use_orig_params: bool = False,
        ignored_states=None,
        device_mesh=None,
    ):
        super().__init__()
        unsupported(param_init_fn)
        offload = check_cpu_offload(cpu_offload)
        mp = _mp.resolve(mixed_precision)
        check_wrappable(module, type(self).__name__)
        if not c10d.is_initialized():
            raise RuntimeError(
                f"{type(self).__name__} needs a process group: call "
                "ember.distributed.init_process_group() first"
            )
        strategy = sharding_strategy or ShardingStrategy.FULL_SHARD
        if not isinstance(strategy, ShardingStrategy):
            raise TypeError(f"sharding_strategy must be a ShardingStrategy, got {strategy!r}")
        if backward_prefetch is not None and not isinstance(backward_prefetch, BackwardPrefetch):
            raise TypeError(
                f"backward_prefetch must be a BackwardPrefetch or None, got {backward_prefetch!r}"
            )
        ignored_mods, ignored_params = resolve_ignored(module, ignored_modules, ignored_states)
        first = next(iter(module.parameters()), None)
        shard_pg, replicate_pg = resolve_groups(
            strategy, process_group, device_mesh, first.device.type if first is not None else "cpu"
        )
        config = config_for(
            strategy,
            shard_pg,
            replicate_group=replicate_pg,
            offload_params=offload,
            use_orig_params=bool(use_orig_params),
            backward_prefetch=backward_prefetch,
            forward_prefetch=forward_prefetch,
            sync_module_states=sync_module_states,
            ignored_params=ignored_params,
            ignored_modules=ignored_mods,
            mixed_precision=mp,
        )
        if auto_wrap_policy is not None:
            policy = _as_policy(auto_wrap_policy)
            _recursive_wrap(
                module,
                policy,
                lambda m: type(self)._make_unit(m, config),
                set(ignored_mods),
                set(ignored_params),
                only_wrap_children=True,
            )
        self._setup(module, config)

    # ---- construction --------------------------------------------------------------------
    @classmethod
    def _make_unit(cls, module: Module, config: _UnitConfig):
        check_wrappable(module, cls.__name__)
        unit = cls.__new__(cls)
        Module.__init__(unit)
        unit._setup(module, config)
        return unit

    def _setup(self, module: Module, config: _UnitConfig) -> None:
        self._config = config
        self._ember_fsdp_unit = True
        self._is_root = None
        self._root_state = None
        self._root_ref = None
        self._pre_backward_done = False
        self._sync_gradients = True
        self._settings = StateDictSettings(
            StateDictType.FULL_STATE_DICT, FullStateDictConfig(), FullOptimStateDictConfig()
        )
        self._fsdp_wrapped_module = module
        module._ember_fsdp_managed = True
        for m in module.modules():  # units inside this one are not roots
            if m is not self and getattr(m, "_ember_fsdp_unit", False):
                m._is_root = False
        groups = collect_params(module, config)
        if config.sync_module_states:
            broadcast_states(groups, module, config)
        self._handles = [FlatParamHandle(g, self, config) for g in groups]
        for i, h in enumerate(self._handles):
            name = "_flat_param" if i == 0 else f"_flat_param_{i}"
            if config.use_orig_params:
                # PyTorch hides the flat parameter: parameters() yields the originals (views of
                # this rank's shard); the attribute stays for introspection
                object.__setattr__(self, name, h.flat_param)
            else:
                self.register_parameter(name, h.flat_param)

    @property
    def module(self) -> Module:
        """The wrapped module."""
        return self._fsdp_wrapped_module

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # PyTorch's FSDP forwards to the wrapped module
            inner = self.__dict__.get("_modules", {}).get("_fsdp_wrapped_module")
            if inner is None:
                raise
            return getattr(inner, name)

    def __getitem__(self, key):
        return self._modules["_fsdp_wrapped_module"].__getitem__(key)

    @property
    def sharding_strategy(self) -> ShardingStrategy | None:
        return self._config.strategy

    def extra_repr(self) -> str:
        n = sum(h.numel for h in self._handles)
        return f"sharding_strategy={self._config.strategy}, flat_params={n}"

    # ---- root and iteration state --------------------------------------------------------
    def _root(self):
        if self._is_root is None:  # the first unit to run forward with no unit above it
            self._is_root = True
            units = [m for m in self.modules() if getattr(m, "_ember_fsdp_unit", False)]
            self._root_state = RootState(units)
            for u in units:  # not a submodule: object.__setattr__ keeps it out of _modules
                object.__setattr__(u, "_root_ref", self)
            mp = self._config.mixed_precision
            if mp is not None and mp.buffer_dtype is not None:
                _mp.cast_buffers(
                    self._fsdp_wrapped_module, mp.buffer_dtype, self._config.ignored_modules
                )
        if self._root_ref is None:
            raise RuntimeError(
                f"{type(self).__name__}: this unit is nested inside another; "
                "call the outermost (root) module, not a nested unit"
            )
        return self._root_ref

    def _ensure_final_callback(self) -> None:
        root = self._root()
        root._root_state.ensure_callback(root)

    def _unit_name(self) -> str:
        return f"{type(self).__name__}({type(self._fsdp_wrapped_module).__name__})"

    # ---- forward -------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        root = self._root()
        if root is self:
            self._root_pre_forward()
        mp = self._config.mixed_precision
        if (
            mp is not None
            and mp.param_dtype is not None
            and (mp.cast_root_forward_inputs if root is self else mp.cast_forward_inputs)
        ):
            args, kwargs = _mp.cast_inputs(mp.param_dtype, args, kwargs)
        self._pre_forward()
        out = self._fsdp_wrapped_module(*args, **kwargs)
        return self._post_forward(out)

    def _root_pre_forward(self) -> None:
        state = self._root_state
        for u in state.units:
            for h in u._handles:
                h.check_unchanged(u._unit_name())
                h.sync_orig_params()
        state.start_iteration()

    def _pre_forward(self) -> None:
        root = self._root_ref
        root._root_state.exec_order.append(self)
        for h in self._handles:
            h.unshard_compute(async_op=True)
        for h in self._handles:
            h.wait_compute()
        if self._config.forward_prefetch:
            nxt = root._root_state.next_in_forward(self)
            if nxt is not None:
                for h in nxt._handles:
                    h.unshard_compute(async_op=True)
        grad = ember.is_grad_enabled()
        for h in self._handles:
            h.attach_views(grad, compute=True)

    def _post_forward(self, out):
        needs_hook = any(h.sharded_at_rest for h in self._handles)
        hooked = False
        if needs_hook and ember.is_grad_enabled():
            out, hooked = register_pre_backward(self, out)
        if not hooked or (self._config.reshard_after_forward and not self._is_root):
            for h in self._handles:
                h.reshard()  # no-op for handles that keep full parameters
        return out

    # ---- backward ------------------------------------------------------------------------
    def _pre_backward(self) -> None:
        if self._pre_backward_done:
            return
        self._pre_backward_done = True
        self._ensure_final_callback()
        for h in self._handles:
            h.unshard_compute(async_op=True)
        for h in self._handles:
            h.wait_compute()
        if self._config.backward_prefetch is BackwardPrefetch.BACKWARD_PRE:
            self._prefetch_backward()

    def _after_handle_backward(self, handle) -> None:
        if self._config.backward_prefetch is BackwardPrefetch.BACKWARD_POST:
            self._prefetch_backward()

    def _prefetch_backward(self) -> None:
        nxt = self._root_ref._root_state.next_in_backward(self)
        if nxt is not None:
            for h in nxt._handles:
                h.unshard_compute(async_op=True)

    def _finalize_backward(self) -> None:
        """Run by the engine when backward has finished (queued by the first hook)."""
        state = self._root_state
        state.callback_queued = False
        for u in state.units:
            for h in u._handles:
                h.finalize_grads()
                h.detach_views()
                h.reshard()
            u._pre_backward_done = False

    def clip_grad_norm_(self, max_norm: float, norm_type: float = 2.0):
        """Clip the gradients of all units by their global norm (computed across ranks; a
        per-rank ``nn.utils.clip_grad_norm_`` would see only this rank's shards). Call on
        the root after backward; returns the total norm."""
        return _clip_grad_norm(self, max_norm, norm_type)

    @contextlib.contextmanager
    def no_sync(self):
        """Accumulate unreduced gradients locally inside the block (reduced at the next
        backward outside it). Call on the root."""
        units = [m for m in self.modules() if getattr(m, "_ember_fsdp_unit", False)]
        prev = [u._sync_gradients for u in units]
        for u in units:
            u._sync_gradients = False
        try:
            yield
        finally:
            for u, p in zip(units, prev):
                u._sync_gradients = p

    # ---- memory report -------------------------------------------------------------------
    def _ember_memory_arrays(self):
        for h in self._handles:
            yield from h.memory_arrays()
