"""``checkpoint_wrapper`` / ``apply_activation_checkpointing`` under PyTorch's module path
(``torch.distributed.algorithms._checkpoint.checkpoint_wrapper``), as FSDP programs import
them; the same objects as ``ember.distributed.fsdp``'s."""

from ...fsdp._checkpoint_wrapper import (
    CHECKPOINT_PREFIX,
    CHECKPOINT_WRAPPED_MODULE,
    CheckpointImpl,
    CheckpointWrapper,
    apply_activation_checkpointing,
    checkpoint_wrapper,
)

__all__ = [
    "CheckpointImpl",
    "CheckpointWrapper",
    "checkpoint_wrapper",
    "apply_activation_checkpointing",
    "CHECKPOINT_WRAPPED_MODULE",
    "CHECKPOINT_PREFIX",
]
