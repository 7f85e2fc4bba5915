"""``ember.distributed.tensor.debug``: ``CommDebugMode`` (count the collectives a block of code
issues, per module) and ``visualize_sharding`` (PyTorch's ``torch.distributed.tensor.debug``).
See docs/distributed.md."""

from ._comm_mode import CommDebugMode
from ._visualize_sharding import visualize_sharding

__all__ = ["CommDebugMode", "visualize_sharding"]
