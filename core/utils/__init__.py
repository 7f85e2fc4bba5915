"""``ember.utils``: data, tensorboard, progress."""

from . import data


def __getattr__(name):
    # ember.utils.checkpoint without an explicit import, as torch.utils.checkpoint
    if name == "checkpoint":
        import importlib

        return importlib.import_module("ember.utils.checkpoint")
    raise AttributeError(f"module 'ember.utils' has no attribute {name!r}")
