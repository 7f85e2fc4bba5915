"""``ember.vision.models.video``: torchvision's video classification models (the 3-D ResNets
R3D-18, MC3-18 and R(2+1)D-18, S3D, MViT v1/v2 and the Video Swin Transformers) with its
module names, so its Kinetics-400 checkpoints load."""

from . import mvit as _mvit
from . import resnet as _resnet
from . import s3d as _s3d
from . import swin_transformer as _swin
from .mvit import *  # noqa: F403
from .resnet import *  # noqa: F403
from .s3d import *  # noqa: F403
from .swin_transformer import *  # noqa: F403

# (``s3d`` is the builder here, as in torchvision, not its module)
__all__ = _resnet.__all__ + _s3d.__all__ + _mvit.__all__ + _swin.__all__
