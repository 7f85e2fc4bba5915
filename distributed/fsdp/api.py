"""Public enums and configuration classes of FSDP, PyTorch's ``torch.distributed.fsdp.api``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto
from typing import Any

__all__ = [
    "ShardingStrategy",
    "BackwardPrefetch",
    "StateDictType",
    "StateDictConfig",
    "FullStateDictConfig",
    "ShardedStateDictConfig",
    "OptimStateDictConfig",
    "FullOptimStateDictConfig",
    "ShardedOptimStateDictConfig",
    "StateDictSettings",
    "CPUOffload",
    "OptimStateKeyType",
    "MixedPrecision",
]


class ShardingStrategy(Enum):
    """How a wrapped unit's parameters, gradients and optimizer state are spread over ranks.

    - ``FULL_SHARD`` (ZeRO-3): parameters, gradients and optimizer state are sharded; each
      unit's parameters are all-gathered before its forward, freed after it, all-gathered
      again before its backward and freed after it; gradients are reduce-scattered.
    - ``SHARD_GRAD_OP`` (ZeRO-2 during computation): as ``FULL_SHARD``, but parameters stay
      unsharded from forward until the end of backward (one all-gather per step).
    - ``NO_SHARD`` (DDP): nothing is sharded; gradients are all-reduced.
    """

    FULL_SHARD = auto()
    SHARD_GRAD_OP = auto()
    NO_SHARD = auto()


class BackwardPrefetch(Enum):
    """When the next unit's all-gather is issued during backward.

    ``BACKWARD_PRE`` (default): when the current unit's backward starts, so the gather of the
    next unit overlaps the current unit's gradient computation. ``BACKWARD_POST``: after the
    current unit's gradients were computed (less memory held at once, less overlap).
    """

    BACKWARD_PRE = auto()
    BACKWARD_POST = auto()


class StateDictType(Enum):
    """What ``state_dict()`` of an FSDP model returns.

    ``FULL_STATE_DICT``: the original parameter names with full (gathered) tensors.
    ``SHARDED_STATE_DICT``: the original names, each with this rank's piece only (see
    ``ember.distributed.fsdp.checkpoint`` for writing and reading one file per rank).
    """

    FULL_STATE_DICT = auto()
    SHARDED_STATE_DICT = auto()


class OptimStateKeyType(Enum):
    """Keys of an optimizer state dict: parameter names or integer parameter ids."""

    PARAM_NAME = auto()
    PARAM_ID = auto()


@dataclass
class StateDictConfig:
    """``offload_to_cpu``: return CPU tensors (matters only for CUDA models)."""

    offload_to_cpu: bool = False


@dataclass
class FullStateDictConfig(StateDictConfig):
    """``rank0_only``: only rank 0 receives the full state dict; the others get an empty dict
    (every rank still takes part in the all-gathers)."""

    rank0_only: bool = False


@dataclass
class ShardedStateDictConfig(StateDictConfig):
    pass


@dataclass
class OptimStateDictConfig:
    offload_to_cpu: bool = False


@dataclass
class FullOptimStateDictConfig(OptimStateDictConfig):
    rank0_only: bool = False


@dataclass
class ShardedOptimStateDictConfig(OptimStateDictConfig):
    pass


@dataclass
class StateDictSettings:
    state_dict_type: StateDictType
    state_dict_config: StateDictConfig
    optim_state_dict_config: OptimStateDictConfig


@dataclass
class CPUOffload:
    """Accepted for PyTorch compatibility; ``offload_params=True`` is not supported."""

    offload_params: bool = False


@dataclass(frozen=True)
class MixedPrecision:
    """Mixed-precision training of an FSDP model (PyTorch's ``MixedPrecision``).

    The sharded parameters (what the optimizer steps) keep their dtype; only the copies
    gathered for forward and backward are cast.

    Args:
        param_dtype: dtype of the gathered parameters, hence of forward and backward compute
            (the shard is cast before the all-gather). ``None``: no cast.
        reduce_dtype: dtype in which gradients are reduced (reduce-scatter / all-reduce).
            ``None``: ``param_dtype`` (or no cast when that is ``None`` too). The reduced
            gradient is cast back to the parameter's dtype for the optimizer.
        buffer_dtype: dtype buffers are cast to at the first forward (``state_dict`` returns
            them in their original dtype). ``None``: no cast.
        keep_low_precision_grads: leave ``flat_param.grad`` in ``param_dtype`` instead of
            casting it back to the parameter's dtype.
        cast_forward_inputs: cast floating-point forward inputs of every unit to
            ``param_dtype``.
        cast_root_forward_inputs: cast floating-point forward inputs of the root unit to
            ``param_dtype``.
    """

    param_dtype: Any = None
    reduce_dtype: Any = None
    buffer_dtype: Any = None
    keep_low_precision_grads: bool = False
    cast_forward_inputs: bool = False
    cast_root_forward_inputs: bool = True
