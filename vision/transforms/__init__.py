"""``ember.vision.transforms``: torchvision's v1 transforms (``functional`` and ``v2`` too)."""

from . import functional, v2
from ._augmix import AugMix
from ._linear_transform import LinearTransformation
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
    "AugMix",
    "LinearTransformation",
]
