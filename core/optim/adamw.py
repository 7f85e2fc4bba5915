"""``torch.optim.adamw``: the module PyTorch defines :class:`AdamW` in (pykeen imports
``from torch.optim.adamw import AdamW``); ember's class lives in :mod:`.adam`."""

from .adam import AdamW

__all__ = ["AdamW"]
