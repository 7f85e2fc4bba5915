"""``ember.vision.models.segmentation``: torchvision's semantic segmentation models (FCN,
DeepLabV3 with ASPP, LR-ASPP) with its module names and builder arguments."""

from .deeplabv3 import *  # noqa: F403
from .fcn import *  # noqa: F403
from .lraspp import *  # noqa: F403
