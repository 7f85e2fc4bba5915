"""``ember.vision.models.optical_flow``: torchvision's RAFT optical-flow models (``raft_large``,
``raft_small``) with its module names, so its FlyingChairs/Things/Sintel/KITTI checkpoints load."""

from .raft import *  # noqa: F403
from .raft import __all__
