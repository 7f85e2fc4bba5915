"""FSDP2: ``fully_shard`` on DTensor parameters (PyTorch's ``torch.distributed.fsdp.fully_shard``).

See docs/sharding.md, section "FSDP2: fully_shard".
"""

from ._api import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy
from ._fully_shard import FSDPModule, UnshardHandle, fully_shard

__all__ = [
    "CPUOffloadPolicy",
    "FSDPModule",
    "MixedPrecisionPolicy",
    "OffloadPolicy",
    "UnshardHandle",
    "fully_shard",
]
