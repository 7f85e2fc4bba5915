"""``ember.distributed._composable.fsdp``: the old path of ``ember.distributed.fsdp``'s
``fully_shard`` (FSDP2) and its policies."""

from ...fsdp import (
    CPUOffloadPolicy,
    FSDPModule,
    MixedPrecisionPolicy,
    OffloadPolicy,
    fully_shard,
)

__all__ = ["CPUOffloadPolicy", "FSDPModule", "MixedPrecisionPolicy", "OffloadPolicy", "fully_shard"]
