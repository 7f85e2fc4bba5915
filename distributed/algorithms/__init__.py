"""``ember.distributed.algorithms``: PyTorch's ``torch.distributed.algorithms`` — DDP
communication hooks (``ddp_comm_hooks``)."""

from . import ddp_comm_hooks
from .grad_bucket import GradBucket

__all__ = ["GradBucket", "ddp_comm_hooks"]
