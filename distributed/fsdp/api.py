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
    "LocalStateDictConfig",
    "LocalOptimStateDictConfig",
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
    - ``HYBRID_SHARD`` (HSDP): ``FULL_SHARD`` within a shard group (a host), replicated
      across the groups: gradients are reduce-scattered within the shard group, then
      all-reduced across the replicas. Give the groups as a 2-D ``device_mesh``
      (dim 0 replicate, dim 1 shard) or ``process_group=(shard_group, replicate_group)``.
    - ``_HYBRID_SHARD_ZERO2``: as ``HYBRID_SHARD`` with ``SHARD_GRAD_OP`` within the group.
    """

    FULL_SHARD = auto()
    SHARD_GRAD_OP = auto()
    NO_SHARD = auto()
    HYBRID_SHARD = auto()
    _HYBRID_SHARD_ZERO2 = auto()


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
    """Options of ``StateDictType.SHARDED_STATE_DICT``: each rank saves and loads only its own
    shards (``offload_to_cpu`` as in :class:`StateDictConfig`)."""


@dataclass
class LocalStateDictConfig(StateDictConfig):
    """PyTorch's options class of ``LOCAL_STATE_DICT`` (flat parameters), importable for
    programs that name it; ember has no ``LOCAL_STATE_DICT``: use ``SHARDED_STATE_DICT``."""


@dataclass
class OptimStateDictConfig:
    """Options of the optimizer state dict. ``offload_to_cpu``: return CPU tensors (matters only
    for CUDA models)."""

    offload_to_cpu: bool = False


@dataclass
class FullOptimStateDictConfig(OptimStateDictConfig):
    """Options of the full (unsharded) optimizer state dict. ``rank0_only``: only rank 0
    receives it; the others get an empty dict."""

    rank0_only: bool = False


@dataclass
class LocalOptimStateDictConfig(OptimStateDictConfig):
    """PyTorch's options class of the ``LOCAL_STATE_DICT`` optimizer state, importable for
    programs that name it (mmengine's FSDP wrapper); ember has no ``LOCAL_STATE_DICT``."""


@dataclass
class ShardedOptimStateDictConfig(OptimStateDictConfig):
    """Options of the sharded optimizer state dict: each rank keeps the state of its own
    shards."""


@dataclass
class StateDictSettings:
    """What ``FullyShardedDataParallel.get_state_dict_type`` returns: the state dict type and
    the model and optimizer state dict configurations in force."""

    state_dict_type: StateDictType
    state_dict_config: StateDictConfig
    optim_state_dict_config: OptimStateDictConfig


@dataclass
class CPUOffload:
    """Offload the sharded parameters and their gradients to the host (PyTorch's ``CPUOffload``).

    With ``offload_params=True`` each unit's shard and its gradient live in host memory, so the
    optimizer steps there; before an all-gather the shard is copied to the compute device, and
    after the reduce-scatter the reduced gradient shard is copied back. On a CPU-only model the
    copies are no-ops and only the placement semantics remain (everything reports device cpu).
    """

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
