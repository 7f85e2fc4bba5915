"""``ember.distributed.algorithms``: PyTorch's ``torch.distributed.algorithms`` — DDP
communication hooks (``ddp_comm_hooks``) and uneven inputs (``Join``, ``Joinable``,
``JoinHook``)."""

from . import ddp_comm_hooks
from .grad_bucket import GradBucket
from .join import Join, Joinable, JoinHook

__all__ = ["GradBucket", "Join", "JoinHook", "Joinable", "ddp_comm_hooks"]
