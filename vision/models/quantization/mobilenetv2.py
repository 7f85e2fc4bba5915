"""Quantizable MobileNetV2 (torchvision.models.quantization.mobilenetv2)."""

from __future__ import annotations

from typing import Any

from ember import nn
from ember.ao.quantization import DeQuantStub, QuantStub
from ember.tensor import Tensor

from .._api import WeightsEnum, handle_legacy_interface
from .._ops import Conv2dNormActivation
from ..mobilenetv2 import InvertedResidual, MobileNet_V2_Weights, MobileNetV2
from ._weights import qweights
from .utils import _builder_kwargs, _fuse_modules, _legacy, _quantizable_builder

__all__ = ["QuantizableMobileNetV2", "MobileNet_V2_QuantizedWeights", "mobilenet_v2"]


class QuantizableInvertedResidual(InvertedResidual):
    """The inverted residual block with its skip add in a ``FloatFunctional``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_add = nn.quantized.FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        if self.use_res_connect:
            return self.skip_add.add(x, self.conv(x))
        return self.conv(x)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse the projection conv with its batch norm."""
        for idx in range(len(self.conv)):
            if type(self.conv[idx]) is nn.Conv2d:
                _fuse_modules(self.conv, [str(idx), str(idx + 1)], is_qat, inplace=True)


class QuantizableMobileNetV2(MobileNetV2):
    """:class:`~ember.vision.models.MobileNetV2` between quant / dequant stubs, with
    ``fuse_model``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x: Tensor) -> Tensor:
        return self.dequant(super().forward(self.quant(x)))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse every conv + bn + ReLU and each block's projection conv + bn."""
        for m in self.modules():
            if type(m) is Conv2dNormActivation:
                _fuse_modules(m, ["0", "1", "2"], is_qat, inplace=True)
            if type(m) is QuantizableInvertedResidual:
                m.fuse_model(is_qat)


class MobileNet_V2_QuantizedWeights(WeightsEnum):
    """torchvision's quantization-aware-trained MobileNetV2 (QNNPACK)."""

    IMAGENET1K_QNNPACK_V1 = qweights(
        "mobilenet_v2_qnnpack_37f702c5",
        3504872,
        MobileNet_V2_Weights.IMAGENET1K_V1,
        backend="qnnpack",
    )
    DEFAULT = IMAGENET1K_QNNPACK_V1


@handle_legacy_interface(
    _legacy(MobileNet_V2_QuantizedWeights, MobileNet_V2_Weights, "IMAGENET1K_QNNPACK_V1")
)
def mobilenet_v2(
    *, weights=None, progress: bool = True, quantize: bool = False, **kwargs: Any
) -> QuantizableMobileNetV2:
    """Quantizable MobileNetV2; ``quantize=True`` returns the int8 model (QNNPACK's
    per-tensor weights by default, as torchvision)."""
    weights = (MobileNet_V2_QuantizedWeights if quantize else MobileNet_V2_Weights).verify(weights)
    backend = _builder_kwargs(weights, kwargs, "qnnpack")
    model = QuantizableMobileNetV2(block=QuantizableInvertedResidual, **kwargs)
    return _quantizable_builder(model, weights, progress, quantize, backend)
