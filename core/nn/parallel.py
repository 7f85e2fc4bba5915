"""``ember.nn.parallel``: PyTorch's path to the data-parallel wrappers.

They live in ``ember.distributed.parallel.ddp`` and
``ember.distributed.parallel.data_parallel`` (with the
functions ``replicate``, ``scatter``, ``parallel_apply``, ``gather``, ``data_parallel``); this
module re-exports them lazily so that ``import ember`` never loads the distributed layer
(DESIGN.md §2).
"""

# (the names resolve lazily in __getattr__ below; pyproject ignores F822 for this file)
__all__ = [
    "DistributedDataParallel",
    "DataParallel",
    "data_parallel",
    "gather",
    "parallel_apply",
    "replicate",
    "scatter",
    "scatter_kwargs",
]


def __getattr__(name):
    if name == "DistributedDataParallel":
        from ember.distributed.parallel import ddp

        return ddp.DistributedDataParallel
    if name in __all__:
        from ember.distributed.parallel import data_parallel

        return getattr(data_parallel, name)
    raise AttributeError(f"module 'ember.nn.parallel' has no attribute {name!r}")
