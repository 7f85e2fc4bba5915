"""``ember.vision.models.video``: torchvision's video classification models (the 3-D ResNets
R3D-18, MC3-18 and R(2+1)D-18) with its module names, so its Kinetics-400 checkpoints load."""

from .resnet import *  # noqa: F403
from .resnet import __all__
