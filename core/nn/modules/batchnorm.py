"""``torch.nn.modules.batchnorm``: the batch norm classes under the module path programs
import them from (timm's ``isinstance(m, nn.modules.batchnorm.BatchNorm2d)``); they are defined
in ``normalization`` and ``lazy_extra``, ``SyncBatchNorm`` in ``ember.distributed``."""

from __future__ import annotations

from .lazy_extra import LazyBatchNorm1d, LazyBatchNorm2d, LazyBatchNorm3d, _LazyNormBase
from .normalization import BatchNorm1d, BatchNorm2d, BatchNorm3d, _BatchNorm, _NormBase

__all__ = [
    "BatchNorm1d",
    "BatchNorm2d",
    "BatchNorm3d",
    "LazyBatchNorm1d",
    "LazyBatchNorm2d",
    "LazyBatchNorm3d",
    "SyncBatchNorm",  # noqa: F822 (module __getattr__)
    "_BatchNorm",
    "_LazyNormBase",
    "_NormBase",
]


def __getattr__(name: str):
    # loaded on use: core does not import ember.distributed at module level
    if name == "SyncBatchNorm":
        from ember.distributed.parallel.sync_batchnorm import SyncBatchNorm

        return SyncBatchNorm
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
