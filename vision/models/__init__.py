"""``ember.vision.models``: torchvision's model constructors and ``*_Weights`` enums.

Module names match torchvision's, so ``state_dict`` keys are the same and torchvision
checkpoints (``.pth`` via ``ember.load``, or safetensors) load with ``load_state_dict``.
"""

from . import (
    detection,  # torchvision.models.detection
    mobilenet,  # torchvision.models.mobilenet (v2 and v3)
    optical_flow,  # torchvision.models.optical_flow
    quantization,  # torchvision.models.quantization
    segmentation,  # torchvision.models.segmentation
    video,  # torchvision.models.video
)
from ._api import (
    Weights,
    WeightsEnum,
    get_model,
    get_model_builder,
    get_model_weights,
    get_weight,
    list_models,
    register_model,
)
from .alexnet import *  # noqa: F403
from .convnext import *  # noqa: F403
from .densenet import *  # noqa: F403
from .efficientnet import *  # noqa: F403
from .efficientnet_v2 import *  # noqa: F403
from .googlenet import *  # noqa: F403
from .inception import *  # noqa: F403
from .maxvit import *  # noqa: F403
from .mnasnet import *  # noqa: F403
from .mobilenetv2 import *  # noqa: F403
from .mobilenetv3 import *  # noqa: F403
from .regnet import *  # noqa: F403
from .resnet import *  # noqa: F403
from .shufflenetv2 import *  # noqa: F403
from .squeezenet import *  # noqa: F403
from .swin_transformer import *  # noqa: F403
from .swin_transformer_v2 import *  # noqa: F403
from .vgg import *  # noqa: F403
from .vision_transformer import *  # noqa: F403
