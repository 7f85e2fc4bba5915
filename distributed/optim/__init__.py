"""``ember.distributed.optim``: optimizer-state sharding.

- ``ZeroRedundancyOptimizer`` (ZeRO-1, PyTorch's API): wrap an optimizer class; use with DDP.
- ``ZeroDataParallel`` (ZeRO-1 / ZeRO-2 as a module wrapper, ember's): shards optimizer state
  (stage 1) and gradients (stage 2) for any optimizer built over ``model.parameters()``.

See docs/sharding.md.
"""

from .zero_data_parallel import ZeroDataParallel
from .zero_redundancy_optimizer import ZeroRedundancyOptimizer

__all__ = ["ZeroDataParallel", "ZeroRedundancyOptimizer"]
