"""LR-ASPP (Howard et al., 2019) on a dilated MobileNetV3-Large."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from ember import nn
from ember.nn import functional as F
from ember.tensor import Tensor

from .._api import Weights, WeightsEnum, _imagenet_transforms, load_weights
from ..detection.backbone_utils import IntermediateLayerGetter
from ..mobilenetv3 import MobileNet_V3_Large_Weights, MobileNetV3, mobilenet_v3_large
from ._utils import _ovewrite_value_param

__all__ = ["LRASPP", "LRASPP_MobileNet_V3_Large_Weights", "lraspp_mobilenet_v3_large"]


class LRASPP(nn.Module):
    """Lite R-ASPP: a ``backbone`` returning ``{"low": ..., "high": ...}`` and
    :class:`LRASPPHead`; returns ``OrderedDict(out=...)`` at the input size."""

    def __init__(
        self,
        backbone: nn.Module,
        low_channels: int,
        high_channels: int,
        num_classes: int,
        inter_channels: int = 128,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = LRASPPHead(low_channels, high_channels, num_classes, inter_channels)

    def forward(self, input: Tensor) -> dict[str, Tensor]:
        out = self.classifier(self.backbone(input))
        out = F.interpolate(out, size=input.shape[-2:], mode="bilinear", align_corners=False)
        return OrderedDict([("out", out)])


class LRASPPHead(nn.Module):
    """High-level features gated by a global-pool sigmoid branch, upsampled to the low-level
    features' size; the two 1x1 classifiers' outputs are summed."""

    def __init__(
        self, low_channels: int, high_channels: int, num_classes: int, inter_channels: int
    ) -> None:
        super().__init__()
        self.cbr = nn.Sequential(
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.BatchNorm2d(inter_channels),
            nn.ReLU(inplace=True),
        )
        self.scale = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(high_channels, inter_channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, input: dict[str, Tensor]) -> Tensor:
        low, high = input["low"], input["high"]
        x = self.cbr(high) * self.scale(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


def _lraspp_mobilenetv3(backbone: MobileNetV3, num_classes: int) -> LRASPP:
    features = backbone.features
    # the strided blocks start the stages C1..Cn-1; the stem and the last block are C0 and Cn
    stage_indices = [0]
    stage_indices += [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
    stage_indices.append(len(features) - 1)
    low_pos, high_pos = stage_indices[-4], stage_indices[-1]  # output strides 8 and 16
    low_channels = features[low_pos].out_channels
    high_channels = features[high_pos].out_channels
    body = IntermediateLayerGetter(features, {str(low_pos): "low", str(high_pos): "high"})
    return LRASPP(body, low_channels, high_channels, num_classes)


class LRASPP_MobileNet_V3_Large_Weights(WeightsEnum):
    """torchvision's COCO (VOC labels) checkpoint for :func:`lraspp_mobilenet_v3_large`."""

    COCO_WITH_VOC_LABELS_V1 = Weights(
        url="https://download.pytorch.org/models/lraspp_mobilenet_v3_large-d234d4ea.pth",
        transforms=_imagenet_transforms(520, 520),
        meta={"num_params": 3221538, "min_size": (1, 1), "categories": None, "num_classes": 21},
    )
    DEFAULT = COCO_WITH_VOC_LABELS_V1


def lraspp_mobilenet_v3_large(
    *,
    weights: LRASPP_MobileNet_V3_Large_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: MobileNet_V3_Large_Weights
    | str
    | None = MobileNet_V3_Large_Weights.IMAGENET1K_V1,
    **kwargs: Any,
) -> LRASPP:
    """LR-ASPP on a dilated MobileNetV3-Large (output stride 16); ``num_classes`` defaults to
    21; pass ``weights_backbone=None`` for random initialisation. No auxiliary head."""
    if kwargs.pop("aux_loss", False):
        raise NotImplementedError("This model does not use auxiliary loss")
    weights = LRASPP_MobileNet_V3_Large_Weights.verify(weights)
    weights_backbone = MobileNet_V3_Large_Weights.verify(weights_backbone)
    if weights is not None:
        weights_backbone = None
        num_classes = _ovewrite_value_param("num_classes", num_classes, 21)
    elif num_classes is None:
        num_classes = 21
    backbone = mobilenet_v3_large(weights=weights_backbone, dilated=True)
    return load_weights(_lraspp_mobilenetv3(backbone, num_classes), weights, progress)
