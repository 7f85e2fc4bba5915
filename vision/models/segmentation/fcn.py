"""FCN (Long et al., 2015) on a dilated ResNet-50, torchvision's ``fcn_resnet50``."""

from __future__ import annotations

from typing import Any

from ember import nn

from .._api import WeightsEnum, load_weights
from .._resnet_weights import ResNet50_Weights, ResNet101_Weights
from ..detection.backbone_utils import IntermediateLayerGetter
from ..resnet import ResNet, resnet50, resnet101
from ._utils import _resolve, _SimpleSegmentationModel, _voc_weights

__all__ = [
    "FCN",
    "FCNHead",
    "FCN_ResNet50_Weights",
    "FCN_ResNet101_Weights",
    "fcn_resnet50",
    "fcn_resnet101",
]


class FCN(_SimpleSegmentationModel):
    """Fully convolutional network: ``backbone`` features -> ``FCNHead`` -> bilinear upsampling
    to the input size; an optional auxiliary head on ``layer3`` (``aux_loss``)."""


class FCNHead(nn.Sequential):
    """3x3 conv to ``in_channels // 4``, BatchNorm, ReLU, dropout 0.1, 1x1 conv to classes."""

    def __init__(self, in_channels: int, channels: int) -> None:
        inter = in_channels // 4
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(0.1),
            nn.Conv2d(inter, channels, 1),
        )


def _fcn_resnet(backbone: ResNet, num_classes: int, aux: bool | None) -> FCN:
    return_layers = {"layer4": "out"}
    if aux:
        return_layers["layer3"] = "aux"
    body = IntermediateLayerGetter(backbone, return_layers=return_layers)
    aux_classifier = FCNHead(1024, num_classes) if aux else None
    return FCN(body, FCNHead(2048, num_classes), aux_classifier)


class FCN_ResNet50_Weights(WeightsEnum):
    """torchvision's COCO (VOC's 20 categories + background) checkpoint for :func:`fcn_resnet50`."""

    COCO_WITH_VOC_LABELS_V1 = _voc_weights("fcn_resnet50_coco-1167a1af", 35322218)
    DEFAULT = COCO_WITH_VOC_LABELS_V1


class FCN_ResNet101_Weights(WeightsEnum):
    """torchvision's COCO (VOC labels) checkpoint for :func:`fcn_resnet101`."""

    COCO_WITH_VOC_LABELS_V1 = _voc_weights("fcn_resnet101_coco-7ecb50ca", 54314346)
    DEFAULT = COCO_WITH_VOC_LABELS_V1


def fcn_resnet50(
    *,
    weights: FCN_ResNet50_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> FCN:
    """FCN with a ResNet-50 backbone whose last two stages are dilated (output stride 8).
    ``num_classes`` defaults to 21; ``aux_loss`` adds the ``layer3`` head. As in torchvision,
    ``weights_backbone`` defaults to the ImageNet ResNet-50 (a download): pass
    ``weights_backbone=None`` for random initialisation."""
    weights, weights_backbone, num_classes, aux_loss = _resolve(
        FCN_ResNet50_Weights, weights, ResNet50_Weights, weights_backbone, num_classes, aux_loss
    )
    backbone = resnet50(weights=weights_backbone, replace_stride_with_dilation=[False, True, True])
    return load_weights(_fcn_resnet(backbone, num_classes, aux_loss), weights, progress)


def fcn_resnet101(
    *,
    weights: FCN_ResNet101_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    aux_loss: bool | None = None,
    weights_backbone: ResNet101_Weights | str | None = ResNet101_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> FCN:
    """FCN with a dilated ResNet-101 backbone (as :func:`fcn_resnet50`)."""
    weights, weights_backbone, num_classes, aux_loss = _resolve(
        FCN_ResNet101_Weights, weights, ResNet101_Weights, weights_backbone, num_classes, aux_loss
    )
    backbone = resnet101(weights=weights_backbone, replace_stride_with_dilation=[False, True, True])
    return load_weights(_fcn_resnet(backbone, num_classes, aux_loss), weights, progress)
