"""``ember.distributed._tensor``: the old import path of DTensor, kept as PyTorch keeps it.

PyTorch moved DTensor to ``torch.distributed.tensor`` and left ``torch.distributed._tensor`` as
a shim (its own examples still import ``init_device_mesh`` from
``torch.distributed._tensor.device_mesh``); this is the same shim over
:mod:`ember.distributed.tensor`.
"""

from __future__ import annotations

import sys
from importlib import import_module

from ember.distributed.tensor import (
    DeviceMesh,
    DTensor,
    Partial,
    Placement,
    Replicate,
    Shard,
    distribute_tensor,
    init_device_mesh,
)

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

# the submodules PyTorch's shim keeps importable under the old path
for _name, _target in (
    ("device_mesh", "ember.distributed.device_mesh"),
    ("placement_types", "ember.distributed.tensor.placement_types"),
    ("api", "ember.distributed.tensor._api"),
    ("experimental", "ember.distributed.tensor.experimental"),
):
    sys.modules[f"{__name__}.{_name}"] = import_module(_target)
