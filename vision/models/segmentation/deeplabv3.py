"""DeepLabV3 (Chen et al., 2017) on a dilated ResNet-50: atrous spatial pyramid pooling."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ember
from ember import nn
from ember.nn import functional as F
from ember.tensor import Tensor

from .._api import Weights, WeightsEnum, _imagenet_transforms, load_weights
from .._resnet_weights import ResNet50_Weights
from ..detection.backbone_utils import IntermediateLayerGetter
from ..resnet import ResNet, resnet50
from ._utils import _ovewrite_value_param, _SimpleSegmentationModel
from .fcn import FCNHead

__all__ = [
    "DeepLabV3",
    "DeepLabHead",
    "ASPP",
    "DeepLabV3_ResNet50_Weights",
    "deeplabv3_resnet50",
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

    COCO_WITH_VOC_LABELS_V1 = Weights(
        url="https://download.pytorch.org/models/deeplabv3_resnet50_coco-cd0a2569.pth",
        transforms=_imagenet_transforms(520, 520),
        meta={"num_params": 42004074, "min_size": (1, 1), "categories": None, "num_classes": 21},
    )
    DEFAULT = COCO_WITH_VOC_LABELS_V1


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
    weights = DeepLabV3_ResNet50_Weights.verify(weights)
    weights_backbone = ResNet50_Weights.verify(weights_backbone)
    if weights is not None:
        weights_backbone = None
        num_classes = _ovewrite_value_param("num_classes", num_classes, 21)
        aux_loss = _ovewrite_value_param("aux_loss", aux_loss, True)
    elif num_classes is None:
        num_classes = 21
    backbone = resnet50(weights=weights_backbone, replace_stride_with_dilation=[False, True, True])
    return load_weights(_deeplabv3_resnet(backbone, num_classes, aux_loss), weights, progress)
