"""``ember.nn.parallel``: PyTorch's path to the data-parallel wrappers.

They live in ``ember.distributed.parallel.ddp`` and
``ember.distributed.parallel.data_parallel`` (with the
functions ``replicate``, ``scatter``, ``parallel_apply``, ``gather``, ``data_parallel``); this
module re-exports them lazily so that ``import ember`` never loads the distributed layer
(DESIGN.md §2).
"""

import sys
import types

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


def _lazy_submodule(name: str, names: tuple[str, ...]) -> None:
    # torch's submodule paths (``from torch.nn.parallel.distributed import
    # DistributedDataParallel``, as accelerate does); this module is one file, so they are
    # registered, still resolving lazily
    mod = types.ModuleType(f"{__name__}.{name}")

    def _get(attr):
        if attr in names:
            return __getattr__(attr)
        raise AttributeError(f"module {mod.__name__!r} has no attribute {attr!r}")

    mod.__getattr__ = _get
    mod.__all__ = list(names)
    sys.modules[mod.__name__] = mod
    if name not in __all__:  # as in torch, the function data_parallel keeps its name here
        globals()[name] = mod


_lazy_submodule("distributed", ("DistributedDataParallel",))
_lazy_submodule("data_parallel", ("DataParallel", "data_parallel"))
_lazy_submodule("scatter_gather", ("scatter", "scatter_kwargs", "gather"))
