"""``ember.vision.transforms``: torchvision's v1 transforms (``functional`` and ``v2`` too)."""

from . import functional, v2
from .autoaugment import AutoAugment, AutoAugmentPolicy, RandAugment, TrivialAugmentWide
from .transforms import *  # noqa: F403
from .transforms import __all__ as _all

__all__ = list(_all) + [
    "functional",
    "v2",
    "AutoAugment",
    "AutoAugmentPolicy",
    "RandAugment",
    "TrivialAugmentWide",
]
