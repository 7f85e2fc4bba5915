"""Quantizable MobileNetV3-Large (torchvision.models.quantization.mobilenetv3)."""

from __future__ import annotations

from typing import Any

import ember
from ember import nn
from ember.ao import quantization as tq
from ember.tensor import Tensor

from .._api import WeightsEnum, handle_legacy_interface, load_weights
from .._ops import Conv2dNormActivation, SqueezeExcitation
from ..mobilenetv3 import InvertedResidual, MobileNet_V3_Large_Weights, MobileNetV3, _large_conf
from ._weights import qweights
from .utils import _builder_kwargs, _fuse_modules, _legacy, _replace_relu

__all__ = ["QuantizableMobileNetV3", "MobileNet_V3_Large_QuantizedWeights", "mobilenet_v3_large"]


class QuantizableSqueezeExcitation(SqueezeExcitation):
    """Squeeze-excitation with a hard sigmoid and its product in a ``FloatFunctional``."""

    _version = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["scale_activation"] = nn.Hardsigmoid
        super().__init__(*args, **kwargs)
        self.skip_mul = nn.quantized.FloatFunctional()

    def forward(self, input: Tensor) -> Tensor:
        return self.skip_mul.mul(self._scale(input), input)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse ``fc1`` with its ReLU."""
        _fuse_modules(self, ["fc1", "activation"], is_qat, inplace=True)


class QuantizableInvertedResidual(InvertedResidual):
    """The MobileNetV3 block with quantizable squeeze-excitation and skip add."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, se_layer=QuantizableSqueezeExcitation, **kwargs)
        self.skip_add = nn.quantized.FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return self.skip_add.add(x, self.block(x))
        return self.block(x)


class QuantizableMobileNetV3(MobileNetV3):
    """:class:`~ember.vision.models.MobileNetV3` between quant / dequant stubs, with
    ``fuse_model``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.quant = tq.QuantStub()
        self.dequant = tq.DeQuantStub()

    def forward(self, x: Tensor) -> Tensor:
        return self.dequant(super().forward(self.quant(x)))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse conv + bn (+ ReLU; hard-swish stays separate) and the SE blocks' fc1 + ReLU."""
        for m in self.modules():
            if type(m) is Conv2dNormActivation:
                names = ["0", "1"]
                if len(m) == 3 and type(m[2]) is nn.ReLU:
                    names.append("2")
                _fuse_modules(m, names, is_qat, inplace=True)
            elif type(m) is QuantizableSqueezeExcitation:
                m.fuse_model(is_qat)


class MobileNet_V3_Large_QuantizedWeights(WeightsEnum):
    """torchvision's quantization-aware-trained MobileNetV3-Large (QNNPACK)."""

    IMAGENET1K_QNNPACK_V1 = qweights(
        "mobilenet_v3_large_qnnpack-5bcacf28",
        5483032,
        MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        backend="qnnpack",
    )
    DEFAULT = IMAGENET1K_QNNPACK_V1


@handle_legacy_interface(
    _legacy(
        MobileNet_V3_Large_QuantizedWeights, MobileNet_V3_Large_Weights, "IMAGENET1K_QNNPACK_V1"
    )
)
def mobilenet_v3_large(
    *, weights=None, progress: bool = True, quantize: bool = False, **kwargs: Any
) -> QuantizableMobileNetV3:
    """Quantizable MobileNetV3-Large. ``quantize=True`` prepares the QAT model and converts
    it, as torchvision does (its quantized checkpoint is a QAT state, loaded before the
    conversion)."""
    enum = MobileNet_V3_Large_QuantizedWeights if quantize else MobileNet_V3_Large_Weights
    weights = enum.verify(weights)
    backend = _builder_kwargs(weights, kwargs, "qnnpack")
    setting, last_channel = _large_conf(
        kwargs.pop("width_mult", 1.0),
        kwargs.pop("reduced_tail", False),
        kwargs.pop("dilated", False),
    )
    model = QuantizableMobileNetV3(
        setting, last_channel, block=QuantizableInvertedResidual, **kwargs
    )
    _replace_relu(model)
    if quantize:
        ember.backends.quantized.engine = backend
        model.fuse_model(is_qat=True)
        model.qconfig = tq.get_default_qat_qconfig(backend)
        tq.prepare_qat(model, inplace=True)
    load_weights(model, weights, progress)
    if quantize:
        tq.convert(model, inplace=True)
        model.eval()
    return model
