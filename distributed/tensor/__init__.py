"""``ember.distributed.tensor``: PyTorch's DTensor API (``torch.distributed.tensor``).

A ``DTensor`` is a global tensor over a ``DeviceMesh``: ``Shard(dim)``, ``Replicate()`` or
``Partial()`` along each mesh dimension. See docs/distributed.md.
"""

from ..device_mesh import DeviceMesh, init_device_mesh
from . import _methods  # noqa: F401  (binds DTensor's operators)
from ._api import DTensor, distribute_tensor
from .placement_types import Partial, Placement, Replicate, Shard

__all__ = [
    "DTensor",
    "DeviceMesh",
    "Partial",
    "Placement",
    "Replicate",
    "Shard",
    "distribute_tensor",
    "init_device_mesh",
]
