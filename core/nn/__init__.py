"""``ember.nn``: modules, parameters, functional, init (PyTorch's names)."""

import sys as _sys

from . import common_types, functional, grad, init, parallel, utils
from ._factory import factory_kwargs
from .module import Module
from .modules import *  # noqa: F403
from .parameter import Buffer, Parameter, UninitializedBuffer, UninitializedParameter

# ``ember.nn.attention`` is torch.nn.attention's package (core/nn/attention/, loaded lazily by
# __getattr__ below); the star import bound the modules file of that name (MultiheadAttention's)
del attention  # noqa: F821
# the star import also bound nn.modules' torch-path submodules (nn.modules.batchnorm, ...), one
# of them over ``ember.nn.utils``: only the package's own names stay
del batchnorm, channelshuffle, distance, instancenorm  # noqa: F821
utils = _sys.modules[__name__ + ".utils"]  # noqa: F811


def __getattr__(name):
    # ``ember.nn.DataParallel`` and ``ember.nn.SyncBatchNorm`` as in PyTorch, loaded lazily
    # (they live in the distributed layer, which ``import ember`` must not load)
    if name == "DataParallel":
        return parallel.DataParallel
    if name in (
        "quantized",
        "qat",
        "intrinsic",
        "quantizable",
        "attention",
    ):  # ember.ao.nn.* aliases; attention
        import importlib

        return importlib.import_module(f"ember.nn.{name}")
    if name == "SyncBatchNorm":
        from ember.distributed.parallel.sync_batchnorm import SyncBatchNorm

        return SyncBatchNorm
    raise AttributeError(f"module 'ember.nn' has no attribute {name!r}")
