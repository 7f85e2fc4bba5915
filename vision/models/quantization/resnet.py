"""Quantizable ResNets (torchvision.models.quantization.resnet): the float blocks with the
residual add (+ ReLU) in a ``FloatFunctional``, quant / dequant stubs, and ``fuse_model``."""

from __future__ import annotations

from typing import Any

from ember import nn
from ember.ao.quantization import DeQuantStub, QuantStub
from ember.tensor import Tensor

from .._api import WeightsEnum, _ovewrite_named_param, handle_legacy_interface
from ..resnet import (
    BasicBlock,
    Bottleneck,
    ResNet,
    ResNet18_Weights,
    ResNet50_Weights,
    ResNeXt101_32X8D_Weights,
    ResNeXt101_64X4D_Weights,
)
from ._weights import qweights
from .utils import _builder_kwargs, _fuse_modules, _legacy, _quantizable_builder

__all__ = [
    "QuantizableResNet",
    "ResNet18_QuantizedWeights",
    "ResNet50_QuantizedWeights",
    "ResNeXt101_32X8D_QuantizedWeights",
    "ResNeXt101_64X4D_QuantizedWeights",
    "resnet18",
    "resnet50",
    "resnext101_32x8d",
    "resnext101_64x4d",
]


class QuantizableBasicBlock(BasicBlock):
    """:class:`~ember.vision.models.BasicBlock` whose residual add + ReLU is one
    ``FloatFunctional.add_relu`` (a quantized add after ``convert``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_relu = nn.quantized.FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.add_relu.add_relu(out, identity)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse conv1 + bn1 + relu, conv2 + bn2 and the downsample's conv + bn."""
        _fuse_modules(self, [["conv1", "bn1", "relu"], ["conv2", "bn2"]], is_qat, inplace=True)
        if self.downsample:
            _fuse_modules(self.downsample, ["0", "1"], is_qat, inplace=True)


class QuantizableBottleneck(Bottleneck):
    """:class:`~ember.vision.models.Bottleneck` with one ReLU module per use and the residual
    add + ReLU in a ``FloatFunctional``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.skip_add_relu = nn.quantized.FloatFunctional()
        self.relu1 = nn.ReLU(inplace=False)
        self.relu2 = nn.ReLU(inplace=False)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.skip_add_relu.add_relu(out, identity)

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse each conv with its batch norm (and ReLU), and the downsample's conv + bn."""
        pairs = [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3"]]
        _fuse_modules(self, pairs, is_qat, inplace=True)
        if self.downsample:
            _fuse_modules(self.downsample, ["0", "1"], is_qat, inplace=True)


class QuantizableResNet(ResNet):
    """:class:`~ember.vision.models.ResNet` between a ``QuantStub`` and a ``DeQuantStub``.

    ``fuse_model()`` fuses conv + bn (+ ReLU) everywhere, in place, without changing the
    float model's outputs; then ``ember.ao.quantization.prepare`` / ``convert`` (or
    ``prepare_qat``) quantize it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x: Tensor) -> Tensor:
        return self.dequant(super().forward(self.quant(x)))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse conv/bn/relu modules for quantization (``is_qat=None``: QAT fusion in
        training mode)."""
        _fuse_modules(self, ["conv1", "bn1", "relu"], is_qat, inplace=True)
        for m in self.modules():
            if type(m) is QuantizableBottleneck or type(m) is QuantizableBasicBlock:
                m.fuse_model(is_qat)


def _resnet(block, layers: list[int], weights, progress: bool, quantize: bool, **kwargs: Any):
    backend = _builder_kwargs(weights, kwargs)
    model = QuantizableResNet(block, layers, **kwargs)
    return _quantizable_builder(model, weights, progress, quantize, backend)


class ResNet18_QuantizedWeights(WeightsEnum):
    """torchvision's post-training-quantized ResNet-18 (FBGEMM)."""

    IMAGENET1K_FBGEMM_V1 = qweights(
        "resnet18_fbgemm_16fa66dd", 11689512, ResNet18_Weights.IMAGENET1K_V1
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


class ResNet50_QuantizedWeights(WeightsEnum):
    """torchvision's post-training-quantized ResNet-50 (FBGEMM; V2 from the newer float
    weights)."""

    IMAGENET1K_FBGEMM_V1 = qweights(
        "resnet50_fbgemm_bf931d71", 25557032, ResNet50_Weights.IMAGENET1K_V1
    )
    IMAGENET1K_FBGEMM_V2 = qweights(
        "resnet50_fbgemm-23753f79", 25557032, ResNet50_Weights.IMAGENET1K_V2, resize_size=232
    )
    DEFAULT = IMAGENET1K_FBGEMM_V2


class ResNeXt101_32X8D_QuantizedWeights(WeightsEnum):
    """torchvision's post-training-quantized ResNeXt-101 32x8d (FBGEMM)."""

    IMAGENET1K_FBGEMM_V1 = qweights(
        "resnext101_32x8_fbgemm_09835ccf", 88791336, ResNeXt101_32X8D_Weights.IMAGENET1K_V1
    )
    IMAGENET1K_FBGEMM_V2 = qweights(
        "resnext101_32x8_fbgemm-ee16d00c",
        88791336,
        ResNeXt101_32X8D_Weights.IMAGENET1K_V2,
        resize_size=232,
    )
    DEFAULT = IMAGENET1K_FBGEMM_V2


class ResNeXt101_64X4D_QuantizedWeights(WeightsEnum):
    """torchvision's post-training-quantized ResNeXt-101 64x4d (FBGEMM)."""

    IMAGENET1K_FBGEMM_V1 = qweights(
        "resnext101_64x4d_fbgemm-605a1cb3",
        83455272,
        ResNeXt101_64X4D_Weights.IMAGENET1K_V1,
        resize_size=232,
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


@handle_legacy_interface(_legacy(ResNet18_QuantizedWeights, ResNet18_Weights))
def resnet18(
    *, weights=None, progress: bool = True, quantize: bool = False, **kwargs: Any
) -> QuantizableResNet:
    """Quantizable ResNet-18; ``quantize=True`` returns the int8 model (calibrated on a
    random image unless ``weights`` brings torchvision's quantized checkpoint)."""
    weights = (ResNet18_QuantizedWeights if quantize else ResNet18_Weights).verify(weights)
    return _resnet(QuantizableBasicBlock, [2, 2, 2, 2], weights, progress, quantize, **kwargs)


@handle_legacy_interface(_legacy(ResNet50_QuantizedWeights, ResNet50_Weights))
def resnet50(
    *, weights=None, progress: bool = True, quantize: bool = False, **kwargs: Any
) -> QuantizableResNet:
    """Quantizable ResNet-50 (as :func:`resnet18`)."""
    weights = (ResNet50_QuantizedWeights if quantize else ResNet50_Weights).verify(weights)
    return _resnet(QuantizableBottleneck, [3, 4, 6, 3], weights, progress, quantize, **kwargs)


@handle_legacy_interface(_legacy(ResNeXt101_32X8D_QuantizedWeights, ResNeXt101_32X8D_Weights))
def resnext101_32x8d(
    *, weights=None, progress: bool = True, quantize: bool = False, **kwargs: Any
) -> QuantizableResNet:
    """Quantizable ResNeXt-101 32x8d (as :func:`resnet18`)."""
    enum = ResNeXt101_32X8D_QuantizedWeights if quantize else ResNeXt101_32X8D_Weights
    _ovewrite_named_param(kwargs, "groups", 32)
    _ovewrite_named_param(kwargs, "width_per_group", 8)
    layers = [3, 4, 23, 3]
    return _resnet(
        QuantizableBottleneck, layers, enum.verify(weights), progress, quantize, **kwargs
    )


@handle_legacy_interface(_legacy(ResNeXt101_64X4D_QuantizedWeights, ResNeXt101_64X4D_Weights))
def resnext101_64x4d(
    *, weights=None, progress: bool = True, quantize: bool = False, **kwargs: Any
) -> QuantizableResNet:
    """Quantizable ResNeXt-101 64x4d (as :func:`resnet18`)."""
    enum = ResNeXt101_64X4D_QuantizedWeights if quantize else ResNeXt101_64X4D_Weights
    _ovewrite_named_param(kwargs, "groups", 64)
    _ovewrite_named_param(kwargs, "width_per_group", 4)
    layers = [3, 4, 23, 3]
    return _resnet(
        QuantizableBottleneck, layers, enum.verify(weights), progress, quantize, **kwargs
    )
