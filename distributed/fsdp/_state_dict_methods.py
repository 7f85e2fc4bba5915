"""``FullyShardedDataParallel``'s full-parameter and state-dict methods (PyTorch's names):
``summon_full_params``, ``set_state_dict_type`` / ``get_state_dict_type`` /
``state_dict_type``, ``state_dict`` / ``load_state_dict`` (``_state_dict.py``) and the
optimizer-state conversions (``_optim_state_dict.py``). ``FullyShardedDataParallel``
inherits them from ``_StateDictMethods``."""

from __future__ import annotations

import contextlib
import warnings

from ember.nn import Module

from . import _optim_state_dict as _osd
from . import _state_dict as _sd
from .api import (
    FullOptimStateDictConfig,
    FullStateDictConfig,
    OptimStateKeyType,
    ShardedOptimStateDictConfig,
    ShardedStateDictConfig,
    StateDictSettings,
    StateDictType,
)


class _StateDictMethods:
    """The state-dict half of ``FullyShardedDataParallel``'s API (its units carry
    ``_handles`` and ``_settings``)."""

    @staticmethod
    @contextlib.contextmanager
    def summon_full_params(
        module: Module,
        recurse: bool = True,
        writeback: bool = True,
        rank0_only: bool = False,
        offload_to_cpu: bool = False,
        with_grads: bool = False,
    ):
        """Inside the block the original parameter attributes hold the full values; with
        ``writeback`` changes are copied back into each rank's shard afterwards."""
        if with_grads:
            raise NotImplementedError("summon_full_params(with_grads=True) is not supported")
        units = (
            [m for m in module.modules() if getattr(m, "_ember_fsdp_unit", False)]
            if recurse
            else [module]
        )
        handles = [h for u in units for h in u._handles]
        for h in handles:
            h.unshard(async_op=True)
        for h in handles:
            h.wait_unshard()
            h.attach_views(False)
        try:
            yield
        finally:
            for h in handles:
                if writeback:
                    h.write_back()
                h.reshard()

    @staticmethod
    def set_state_dict_type(
        module: Module,
        state_dict_type: StateDictType,
        state_dict_config=None,
        optim_state_dict_config=None,
    ) -> StateDictSettings:
        """Set what ``state_dict`` / ``optim_state_dict`` return for every unit under
        ``module``; returns the previous settings."""
        if not isinstance(state_dict_type, StateDictType):
            raise TypeError(f"state_dict_type must be a StateDictType, got {state_dict_type!r}")
        full = state_dict_type is StateDictType.FULL_STATE_DICT
        if state_dict_config is None:
            state_dict_config = FullStateDictConfig() if full else ShardedStateDictConfig()
        if optim_state_dict_config is None:
            optim_state_dict_config = (
                FullOptimStateDictConfig() if full else ShardedOptimStateDictConfig()
            )
        new = StateDictSettings(state_dict_type, state_dict_config, optim_state_dict_config)
        units = [m for m in module.modules() if getattr(m, "_ember_fsdp_unit", False)]
        if not units:
            raise ValueError("set_state_dict_type: the module contains no FSDP unit")
        prev = units[0]._settings
        for u in units:
            u._settings = new
        return prev

    @staticmethod
    def get_state_dict_type(module: Module) -> StateDictSettings:
        for m in module.modules():
            if getattr(m, "_ember_fsdp_unit", False):
                return m._settings
        raise ValueError("get_state_dict_type: the module contains no FSDP unit")

    @staticmethod
    @contextlib.contextmanager
    def state_dict_type(
        module: Module,
        state_dict_type: StateDictType,
        state_dict_config=None,
        optim_state_dict_config=None,
    ):
        """Use the given state-dict type inside the block (PyTorch's context manager)."""
        prev = _StateDictMethods.set_state_dict_type(
            module, state_dict_type, state_dict_config, optim_state_dict_config
        )
        try:
            yield
        finally:
            _StateDictMethods.set_state_dict_type(
                module, prev.state_dict_type, prev.state_dict_config, prev.optim_state_dict_config
            )

    def state_dict(self, *args, destination=None, prefix: str = "", keep_vars: bool = False):
        """The original parameter names with full tensors (``FULL_STATE_DICT``) or with this
        rank's pieces (``SHARDED_STATE_DICT``); see ``state_dict_type``."""
        return _sd.state_dict(self, prefix)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load a full state dict (from any number of ranks, or an unwrapped model) or this
        rank's sharded state dict (same number of ranks and wrapping)."""
        return _sd.load_state_dict(self, state_dict, strict)

    @staticmethod
    def optim_state_dict(model: Module, optim, optim_state_dict=None, group=None) -> dict:
        """The optimizer state keyed by original parameter names: full tensors
        (``FULL_STATE_DICT``) or this rank's pieces (``SHARDED_STATE_DICT``)."""
        return _osd.optim_state_dict(model, optim, optim_state_dict)

    @staticmethod
    def full_optim_state_dict(
        model: Module, optim, optim_input=None, rank0_only: bool = True, group=None
    ) -> dict:
        """Deprecated PyTorch API (use :meth:`optim_state_dict`): the full optimizer state
        keyed by original parameter names, on rank 0 only (``{}`` elsewhere) unless
        ``rank0_only=False``. Every rank must call it (it gathers)."""
        warnings.warn(
            "FSDP.full_optim_state_dict is deprecated; use FSDP.optim_state_dict with "
            "StateDictType.FULL_STATE_DICT",
            FutureWarning,
            stacklevel=2,
        )
        if optim_input is not None:
            raise NotImplementedError("full_optim_state_dict: optim_input is not supported")
        with _StateDictMethods.state_dict_type(
            model,
            StateDictType.FULL_STATE_DICT,
            FullStateDictConfig(),
            FullOptimStateDictConfig(rank0_only=rank0_only),
        ):
            osd = _osd.optim_state_dict(model, optim, None)
        from .. import distributed_c10d as c10d

        return {} if rank0_only and c10d.get_rank() != 0 else osd

    @staticmethod
    def scatter_full_optim_state_dict(
        full_optim_state_dict: dict | None,
        model: Module,
        optim_input=None,
        optim=None,
        group=None,
    ) -> dict:
        """Deprecated PyTorch API: rank 0's :meth:`full_optim_state_dict` sent to every rank
        and turned into what ``optim.load_state_dict`` takes there (``optim`` is required:
        ember orders the state by the optimizer's parameters)."""
        if optim is None:
            raise TypeError(
                "scatter_full_optim_state_dict: pass optim= (the optimizer to load into)"
            )
        from .._objects import object_from_rank0

        full = object_from_rank0(full_optim_state_dict)
        with _StateDictMethods.state_dict_type(model, StateDictType.FULL_STATE_DICT):
            return _osd.to_load(model, optim, full)

    @staticmethod
    def optim_state_dict_to_load(
        model: Module,
        optim,
        optim_state_dict: dict,
        is_named_optimizer: bool = False,
        load_directly: bool = False,
        group=None,
    ) -> dict:
        """Turn a name-keyed (full or sharded) optimizer state dict into one that
        ``optim.load_state_dict`` takes on this rank."""
        out = _osd.to_load(model, optim, optim_state_dict)
        if load_directly:
            optim.load_state_dict(out)
        return out

    @staticmethod
    def rekey_optim_state_dict(
        optim_state_dict: dict,
        optim_state_key_type: OptimStateKeyType,
        model: Module,
        optim_input=None,
        optim=None,
    ) -> dict:
        """Re-key a full optimizer state dict between parameter names and the integer ids of
        an unwrapped ``model`` (to load it into a plain optimizer, or back)."""
        return _osd.rekey(optim_state_dict, optim_state_key_type, model)
