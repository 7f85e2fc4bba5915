"""``ember.utils``: data, tensorboard, progress."""

from . import data


def __getattr__(name):
    # ember.utils.benchmark / .checkpoint / .hooks without an explicit import, as torch.utils's
    if name in (
        "benchmark",
        "checkpoint",
        "deterministic",
        "hooks",
        "_pytree",
        "_python_dispatch",
        "dlpack",
        "flop_counter",
        "module_tracker",
        "mobile_optimizer",
        "weak",
    ):
        import importlib

        return importlib.import_module(f"ember.utils.{name}")
    if name == "swap_tensors":
        from ._swap import swap_tensors

        return swap_tensors
    raise AttributeError(f"module 'ember.utils' has no attribute {name!r}")
