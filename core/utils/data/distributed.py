"""``ember.utils.data.distributed.DistributedSampler``: PyTorch's import path for it."""

from .sampler import DistributedSampler

__all__ = ["DistributedSampler"]
