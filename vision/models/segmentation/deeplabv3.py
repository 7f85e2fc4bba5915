"""DeepLabV3 (Chen et al., 2017) on a dilated ResNet-50: atrous spatial pyramid pooling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ember
from ember import nn
from ember.nn import functional as F
from ember.tensor import Tensor

from .._api import WeightsEnum, load_weights
from .._resnet_weights import ResNet50_Weights, ResNet101_Weights
from ..detection.backbone_utils import IntermediateLayerGetter
from ..mobilenetv3 import MobileNet_V3_Large_Weights, MobileNetV3, mobilenet_v3_large
from ..resnet import ResNet, resnet50, resnet101
from ._utils import _resolve, _SimpleSegmentationModel, _voc_weights
from .fcn import FCNHead

__all__ = [
    "DeepLabV3",
    "DeepLabHead",
    "ASPP",
    "DeepLabV3_ResNet50_Weights",
    "DeepLabV3_ResNet101_Weights",
    "DeepLabV3_MobileNet_V3_Large_Weights",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
]


class DeepLabV3(_SimpleSegmentationModel):
    """DeepLabV3: ``backbone`` features -> ``DeepLabHead`` (ASPP) -> bilinear upsampling."""


class DeepLabHead(nn.Sequential):
    """ASPP, 3x3 conv, BatchNorm, ReLU, 1x1 conv to the classes."""

    def __init__(
        self, in_channels: int, num_classes: int, atrous_rates: Sequence[int] = (12, 24, 36)
    ) -> None:
        super().__init__(
            ASPP(in_channels, atrous_rates),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Conv2d(256, num_classes, 1),
        )


class ASPPConv(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, dilation: int) -> None:
        super().__init__(
            nn.Conv2d(
                in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool, 1x1 conv, BN, ReLU, upsampled back."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        for mod in self:
            x = mod(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: a 1x1 branch, one 3x3 branch per atrous rate and the
    pooling branch, concatenated and projected to ``out_channels`` (dropout 0.5)."""

    def __init__(
        self, in_channels: int, atrous_rates: Sequence[int], out_channels: int = 256
    ) -> None:
        super().__init__()
        modules: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
            )
        ]
        modules += [ASPPConv(in_channels, out_channels, rate) for rate in tuple(atrous_rates)]
        modules.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(modules)
        self.project = nn.Sequential(
            nn.Conv2d(len(self.convs) * out_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(),
            nn.Dropout(0.5),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.project(ember.cat([conv(x) for conv in self.convs], dim=1))


def _deeplabv3_resnet(backbone: ResNet, num_classes: int, aux: bool | None) -> DeepLabV3:
    return_layers = {"layer4": "out"}
    if aux:
        return_layers["layer3"] = "aux"
    body = IntermediateLayerGetter(backbone, return_layers=return_layers)
    aux_classifier = FCNHead(1024, num_classes) if aux else None
    return DeepLabV3(body, DeepLabHead(2048, num_classes), aux_classifier)


class DeepLabV3_ResNet50_Weights(WeightsEnum):
    """torchvision's COCO (VOC labels) checkpoint for :func:`deeplabv3_resnet50`."""

    COCO_WITH_VOC_LABELS_V1 = _voc_weights("deeplabv3_resnet50_coco-cd0a2569", 42004074)
    DEFAULT = COCO_WITH_VOC_LABELS_V1


class DeepLabV3_ResNet101_Weights(WeightsEnum):
    """torchvision's COCO (VOC labels) checkpoint for :func:`deeplabv3_resnet101`."""

    COCO_WITH_VOC_LABELS_V1 = _voc_weights("deeplabv3_resnet101_coco-586e9e4e", 60996202)
    DEFAULT = COCO_WITH_VOC_LABELS_V1


class DeepLabV3_MobileNet_V3_Large_Weights(WeightsEnum):
    """torchvision's COCO (VOC labels) checkpoint for :func:`deeplabv3_mobilenet_v3_large`."""

    COCO_WITH_VOC_LABELS_V1 = _voc_weights("deeplabv3_mobilenet_v3_large-fc3c493d", 11029328)
    DEFAULT = COCO_WITH_VOC_LABELS_V1


def _deeplabv3_mobilenetv3(backbone: MobileNetV3, num_classes: int, aux: bool | None):
    features = backbone.features
    # the strided blocks start the stages C1..Cn-1; the stem and the last block are C0 and Cn
    stage_indices = [0]
    stage_indices += [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
    stage_indices.append(len(features) - 1)
    out_pos, aux_pos = stage_indices[-1], stage_indices[-4]  # output strides 16 and 8
    return_layers = {str(out_pos): "out"}
    if aux:
        return_layers[str(aux_pos)] = "aux"
    body = IntermediateLayerGetter(features, return_layers=return_layers)
    aux_classifier = FCNHead(features[aux_pos].out_channels, num_classes) if aux else None
    head = DeepLabHead(features[out_pos].out_channels, num_classes)
    return DeepLabV3(body, head, aux_classifier)


def deeplabv3_resnet50(
    *,
    weights: DeepLabV3_ResNet50_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> DeepLabV3:
    """DeepLabV3 with a dilated ResNet-50 (output stride 8) and ASPP rates 12/24/36.
    ``num_classes`` defaults to 21; pass ``weights_backbone=None`` for random initialisation
    (the default, as torchvision's, downloads the ImageNet ResNet-50)."""
    weights, weights_backbone, num_classes, aux_loss = _resolve(
        DeepLabV3_ResNet50_Weights,
        weights,
        ResNet50_Weights,
        weights_backbone,
        num_classes,
        aux_loss,
    )
    backbone = resnet50(weights=weights_backbone, replace_stride_with_dilation=[False, True, True])
    return load_weights(_deeplabv3_resnet(backbone, num_classes, aux_loss), weights, progress)


def deeplabv3_resnet101(
    *,
    weights: DeepLabV3_ResNet101_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: ResNet101_Weights | str | None = ResNet101_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> DeepLabV3:
    """DeepLabV3 with a dilated ResNet-101 (as :func:`deeplabv3_resnet50`)."""
    weights, weights_backbone, num_classes, aux_loss = _resolve(
        DeepLabV3_ResNet101_Weights,
        weights,
        ResNet101_Weights,
        weights_backbone,
        num_classes,
        aux_loss,
    )
    backbone = resnet101(weights=weights_backbone, replace_stride_with_dilation=[False, True, True])
    return load_weights(_deeplabv3_resnet(backbone, num_classes, aux_loss), weights, progress)


def deeplabv3_mobilenet_v3_large(
    *,
    weights: DeepLabV3_MobileNet_V3_Large_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: MobileNet_V3_Large_Weights
    | str
    | None = MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> DeepLabV3:
    """DeepLabV3 on a dilated MobileNetV3-Large (output stride 16; the auxiliary head reads
    the stride-8 stage). ``num_classes`` defaults to 21; pass ``weights_backbone=None`` for
    random initialisation."""
    weights, weights_backbone, num_classes, aux_loss = _resolve(
        DeepLabV3_MobileNet_V3_Large_Weights,
        weights,
        MobileNet_V3_Large_Weights,
        weights_backbone,
        num_classes,
        aux_loss,
    )
    backbone = mobilenet_v3_large(weights=weights_backbone, dilated=True)
    model = _deeplabv3_mobilenetv3(backbone, num_classes, aux_loss)
    return load_weights(model, weights, progress)
