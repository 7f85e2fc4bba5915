"""``ember.nn.parallel``: PyTorch's path to the data-parallel wrappers.

They live in ``ember.distributed.ddp``; this module re-exports them lazily so that
``import ember`` never loads the distributed layer (DESIGN.md §2).
"""

__all__ = ["DistributedDataParallel", "DataParallel"]  # noqa: F822 (resolved lazily below)


def __getattr__(name):
    if name in __all__:
        from ember.distributed import ddp

        return getattr(ddp, name)
    raise AttributeError(f"module 'ember.nn.parallel' has no attribute {name!r}")
