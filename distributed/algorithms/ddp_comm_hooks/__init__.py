"""``ember.distributed.algorithms.ddp_comm_hooks``: DDP communication hooks and PyTorch's
``DDPCommHookType`` / ``register_ddp_comm_hook`` registry of the built-in ones."""

from __future__ import annotations

import enum
import functools

from . import default_hooks, powerSGD_hook
from .default_hooks import (
    allreduce_hook,
    bf16_compress_hook,
    bf16_compress_wrapper,
    fp16_compress_hook,
    fp16_compress_wrapper,
)
from .powerSGD_hook import PowerSGDState, batched_powerSGD_hook

__all__ = [
    "DDPCommHookType",
    "register_ddp_comm_hook",
    "default_hooks",
    "allreduce_hook",
    "fp16_compress_hook",
    "bf16_compress_hook",
    "fp16_compress_wrapper",
    "bf16_compress_wrapper",
    "powerSGD_hook",
    "PowerSGDState",
    "batched_powerSGD_hook",
]


def _register_default(hook, model, state) -> None:
    model.register_comm_hook(state, hook)


def _register_powerSGD(
    hook, model, state, matrix_approximation_rank: int, start_powerSGD_iter: int = 1_000
) -> None:
    # PyTorch's registry: ``state`` is the process group; the PowerSGD state is made here
    powersgd = PowerSGDState(
        process_group=state,
        matrix_approximation_rank=matrix_approximation_rank,
        start_powerSGD_iter=start_powerSGD_iter,
    )
    model.register_comm_hook(powersgd, hook)


class DDPCommHookType(enum.Enum):
    """The built-in hooks by name: ``register_ddp_comm_hook(DDPCommHookType.FP16_COMPRESS,
    model, state)``."""

    ALLREDUCE = functools.partial(_register_default, default_hooks.allreduce_hook)
    FP16_COMPRESS = functools.partial(_register_default, default_hooks.fp16_compress_hook)
    BF16_COMPRESS = functools.partial(_register_default, default_hooks.bf16_compress_hook)
    POWER_SGD = functools.partial(
        _register_powerSGD, powerSGD_hook.powerSGD_hook, matrix_approximation_rank=1
    )
    POWER_SGD_RANK2 = functools.partial(
        _register_powerSGD, powerSGD_hook.powerSGD_hook, matrix_approximation_rank=2
    )
    BATCHED_POWER_SGD = functools.partial(
        _register_powerSGD, batched_powerSGD_hook, matrix_approximation_rank=1
    )
    BATCHED_POWER_SGD_RANK2 = functools.partial(
        _register_powerSGD, batched_powerSGD_hook, matrix_approximation_rank=2
    )


def register_ddp_comm_hook(comm_hook_type: DDPCommHookType, model, state=None) -> None:
    """Register the built-in hook ``comm_hook_type`` on the DDP ``model``."""
    if not isinstance(comm_hook_type, DDPCommHookType):
        raise TypeError(f"comm_hook_type must be a DDPCommHookType, got {comm_hook_type!r}")
    comm_hook_type.value(model=model, state=state)
