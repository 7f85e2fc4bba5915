"""``ember.distributed._composable``: PyTorch's older home of the composable APIs.

Libraries still import ``fully_shard`` from ``torch.distributed._composable.fsdp``
(transformers' FSDP2 support); the implementation is ``ember.distributed.fsdp``'s.
"""

from . import fsdp

__all__ = ["fsdp"]
