"""``ember.distributed.algorithms.ddp_comm_hooks``: DDP communication hooks and PyTorch's
``DDPCommHookType`` / ``register_ddp_comm_hook`` registry of the built-in ones."""

from __future__ import annotations

import enum
import functools

from . import default_hooks
from .default_hooks import (
    allreduce_hook,
    bf16_compress_hook,
    bf16_compress_wrapper,
    fp16_compress_hook,
    fp16_compress_wrapper,
)

__all__ = ["DDPCommHookType", "register_ddp_comm_hook", "default_hooks", "allreduce_hook",
           "fp16_compress_hook", "bf16_compress_hook", "fp16_compress_wrapper",
           "bf16_compress_wrapper"]


def _register_default(hook, model, state) -> None:
    model.register_comm_hook(state, hook)


class DDPCommHookType(enum.Enum):
    """The built-in hooks by name: ``register_ddp_comm_hook(DDPCommHookType.FP16_COMPRESS,
    model, state)``."""

    ALLREDUCE = functools.partial(_register_default, default_hooks.allreduce_hook)
    FP16_COMPRESS = functools.partial(_register_default, default_hooks.fp16_compress_hook)
    BF16_COMPRESS = functools.partial(_register_default, default_hooks.bf16_compress_hook)


def register_ddp_comm_hook(comm_hook_type: DDPCommHookType, model, state=None) -> None:
    """Register the built-in hook ``comm_hook_type`` on the DDP ``model``."""
    if not isinstance(comm_hook_type, DDPCommHookType):
        raise TypeError(f"comm_hook_type must be a DDPCommHookType, got {comm_hook_type!r}")
    comm_hook_type.value(model=model, state=state)
