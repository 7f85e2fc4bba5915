"""``ember.distributed.optim``: optimizer-state sharding.

- ``ZeroRedundancyOptimizer`` (ZeRO-1, PyTorch's API): wrap an optimizer class; use with DDP.
- ``DistributedOptimizer`` (PyTorch's API): steps parameters spread over RPC workers with the
  gradients of a distributed autograd context (docs/distributed.md, "RPC").
- ``ZeroDataParallel`` (ZeRO-1 / ZeRO-2 as a module wrapper, ember's): shards optimizer state
  (stage 1) and gradients (stage 2) for any optimizer built over ``model.parameters()``.

See docs/sharding.md.
"""

from .optimizer import DistributedOptimizer
from .zero_data_parallel import ZeroDataParallel
from .zero_redundancy_optimizer import ZeroRedundancyOptimizer

__all__ = ["DistributedOptimizer", "ZeroDataParallel", "ZeroRedundancyOptimizer"]
