"""``ember.vision.models.quantization``: torchvision's quantizable models.

Each model is its float counterpart with quant / dequant stubs, ``FloatFunctional`` where
tensors meet (residual adds, concatenations, the squeeze-excitation product) and a
``fuse_model(is_qat=None)`` method, so eager-mode quantization (``prepare`` / ``convert``,
``prepare_qat``) applies to it; ``quantize=True`` returns the int8 model. Module names and
``state_dict`` keys are torchvision's.
"""

from .googlenet import *  # noqa: F403
from .googlenet import __all__ as _googlenet
from .inception import *  # noqa: F403
from .inception import __all__ as _inception
from .mobilenet import *  # noqa: F403
from .mobilenet import __all__ as _mobilenet
from .resnet import *  # noqa: F403
from .resnet import __all__ as _resnet
from .shufflenetv2 import *  # noqa: F403
from .shufflenetv2 import __all__ as _shufflenet

__all__ = _googlenet + _inception + _mobilenet + _resnet + _shufflenet
