"""``ember.distributed.nn``: PyTorch's ``torch.distributed.nn``.

``RemoteModule`` (a module living on another RPC worker; ``api/remote_module.py``) and the
collectives autograd differentiates (``functional.py``: ``all_reduce``, ``broadcast``,
``all_gather``, ``reduce_scatter``, ``all_to_all``). See docs/distributed.md ("RPC").
"""

from . import functional
from .api.remote_module import RemoteModule
from .functional import all_gather, all_reduce, all_to_all, broadcast, reduce_scatter

__all__ = [
    "RemoteModule",
    "all_gather",
    "all_reduce",
    "all_to_all",
    "broadcast",
    "functional",
    "reduce_scatter",
]
