"""SSDlite (Sandler et al. 2018, MobileNetV2 paper; Howard et al. 2019, MobileNetV3 section
6.3) with a MobileNetV3-Large backbone (torchvision.models.detection.ssdlite):
depthwise-separable heads and extra blocks, and ``ssdlite320_mobilenet_v3_large``."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

from ember import Tensor, nn

from ...ops.misc import Conv2dNormActivation
from .._api import WeightsEnum
from ..mobilenetv3 import MobileNet_V3_Large_Weights, MobileNetV3, mobilenet_v3_large
from . import _utils as det_utils
from ._single_stage import _coco_weights
from .anchor_utils import DefaultBoxGenerator
from .backbone_utils import _validate_trainable_layers
from .faster_rcnn import _resolve_num_classes
from .ssd import SSD, SSDScoringHead

__all__ = [
    "SSDLiteClassificationHead",
    "SSDLiteFeatureExtractorMobileNet",
    "SSDLiteHead",
    "SSDLiteRegressionHead",
    "SSDLite320_MobileNet_V3_Large_Weights",
    "ssdlite320_mobilenet_v3_large",
]


def _prediction_block(in_channels: int, out_channels: int, kernel_size: int, norm_layer):
    # depthwise kxk + norm + ReLU6, then a 1x1 projection to the outputs
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, kernel_size=kernel_size,
                             groups=in_channels, norm_layer=norm_layer,
                             activation_layer=nn.ReLU6),
        nn.Conv2d(in_channels, out_channels, 1),
    )  # fmt: skip


def _extra_block(in_channels: int, out_channels: int, norm_layer) -> nn.Sequential:
    # 1x1 to half the outputs, depthwise 3x3 stride 2, 1x1 to the outputs (all norm + ReLU6)
    mid = out_channels // 2
    return nn.Sequential(
        Conv2dNormActivation(in_channels, mid, kernel_size=1, norm_layer=norm_layer,
                             activation_layer=nn.ReLU6),
        Conv2dNormActivation(mid, mid, kernel_size=3, stride=2, groups=mid,
                             norm_layer=norm_layer, activation_layer=nn.ReLU6),
        Conv2dNormActivation(mid, out_channels, kernel_size=1, norm_layer=norm_layer,
                             activation_layer=nn.ReLU6),
    )  # fmt: skip


def _normal_init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=0.03)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0.0)


class SSDLiteClassificationHead(SSDScoringHead):
    """A depthwise-separable prediction block per map: ``num_classes`` logits per box."""

    def __init__(self, in_channels: list[int], num_anchors: list[int], num_classes: int,
                 norm_layer: Callable[..., nn.Module]) -> None:  # fmt: skip
        blocks = nn.ModuleList(
            _prediction_block(c, num_classes * a, 3, norm_layer)
            for c, a in zip(in_channels, num_anchors)
        )
        _normal_init(blocks)
        super().__init__(blocks, num_classes)


class SSDLiteRegressionHead(SSDScoringHead):
    """A depthwise-separable prediction block per map: 4 box deltas per box."""

    def __init__(self, in_channels: list[int], num_anchors: list[int],
                 norm_layer: Callable[..., nn.Module]) -> None:  # fmt: skip
        blocks = nn.ModuleList(
            _prediction_block(c, 4 * a, 3, norm_layer) for c, a in zip(in_channels, num_anchors)
        )
        _normal_init(blocks)
        super().__init__(blocks, 4)


class SSDLiteHead(nn.Module):
    """SSDlite's classification and regression heads over the feature maps."""

    def __init__(self, in_channels: list[int], num_anchors: list[int], num_classes: int,
                 norm_layer: Callable[..., nn.Module]) -> None:  # fmt: skip
        super().__init__()
        self.classification_head = SSDLiteClassificationHead(
            in_channels, num_anchors, num_classes, norm_layer
        )
        self.regression_head = SSDLiteRegressionHead(in_channels, num_anchors, norm_layer)

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        return {
            "bbox_regression": self.regression_head(x),
            "cls_logits": self.classification_head(x),
        }


class SSDLiteFeatureExtractorMobileNet(nn.Module):
    """MobileNet's features split at the C4 block's expansion layer (``features[0]`` ends
    there, ``features[1]`` runs to the last layer), then four extra blocks halving the map
    each time: six maps."""

    def __init__(self, backbone: nn.Sequential, c4_pos: int,
                 norm_layer: Callable[..., nn.Module], width_mult: float = 1.0,
                 min_depth: int = 16) -> None:  # fmt: skip
        super().__init__()
        if backbone[c4_pos].use_res_connect:
            raise ValueError("backbone[c4_pos].use_res_connect should be False")
        self.features = nn.Sequential(
            nn.Sequential(*backbone[:c4_pos], backbone[c4_pos].block[0]),  # to C4's expansion
            nn.Sequential(backbone[c4_pos].block[1:], *backbone[c4_pos + 1 :]),  # to the end
        )

        def depth(d: int) -> int:
            return max(min_depth, int(d * width_mult))

        extra = nn.ModuleList([
            _extra_block(backbone[-1].out_channels, depth(512), norm_layer),
            _extra_block(depth(512), depth(256), norm_layer),
            _extra_block(depth(256), depth(256), norm_layer),
            _extra_block(depth(256), depth(128), norm_layer),
        ])  # fmt: skip
        _normal_init(extra)
        self.extra = extra

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        output = []
        for block in [*self.features, *self.extra]:
            x = block(x)
            output.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(output))


def _mobilenet_extractor(
    backbone: MobileNetV3, trainable_layers: int, norm_layer: Callable[..., nn.Module]
) -> SSDLiteFeatureExtractorMobileNet:
    features = backbone.features
    # stages: the stem, each strided block (C1 .. Cn-1) and the last layer (Cn)
    stage_indices = (
        [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
        + [len(features) - 1]
    )  # fmt: skip
    num_stages = len(stage_indices)
    if not 0 <= trainable_layers <= num_stages:
        raise ValueError(
            f"trainable_layers should be in the range [0, {num_stages}], instead got "
            f"{trainable_layers}"
        )
    freeze_before = (
        len(features) if trainable_layers == 0 else stage_indices[num_stages - trainable_layers]
    )
    for b in features[:freeze_before]:
        for parameter in b.parameters():
            parameter.requires_grad_(False)
    return SSDLiteFeatureExtractorMobileNet(features, stage_indices[-2], norm_layer)


class SSDLite320_MobileNet_V3_Large_Weights(WeightsEnum):
    """torchvision's COCO checkpoint for :func:`ssdlite320_mobilenet_v3_large` (box mAP
    21.3)."""

    COCO_V1 = _coco_weights(
        "https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth",
        3440060, 21.3,
        "https://github.com/pytorch/vision/tree/main/references/detection"
        "#ssdlite320-mobilenetv3-large",
    )  # fmt: skip
    DEFAULT = COCO_V1


def ssdlite320_mobilenet_v3_large(
    *,
    weights: SSDLite320_MobileNet_V3_Large_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: MobileNet_V3_Large_Weights | str | None = (
        MobileNet_V3_Large_Weights.IMAGENET1K_V1
    ),
    trainable_backbone_layers: int | None = None,
    norm_layer: Callable[..., nn.Module] | None = None,
    **kwargs: Any,
) -> SSD:
    """SSDlite on MobileNetV3-Large at 320 x 320: six maps, six boxes per cell (ratios 2
    and 3), inputs scaled to [-1, 1]. Without backbone weights the backbone uses the reduced
    tail (MobileNetV3 paper, table 6) and SSDlite's N(0, 0.03) initialization. ``weights``
    (COCO) or ``weights_backbone`` (ImageNet, the default as in torchvision) load a
    checkpoint; pass ``weights_backbone=None`` for random weights."""
    weights = SSDLite320_MobileNet_V3_Large_Weights.verify(weights)
    weights_backbone = MobileNet_V3_Large_Weights.verify(weights_backbone)
    if "size" in kwargs:
        warnings.warn(
            "The size of the model is already fixed; ignoring the parameter.", stacklevel=2
        )
        kwargs.pop("size")
    if weights is not None:
        weights_backbone = None
    num_classes = _resolve_num_classes(weights, num_classes)
    is_trained = weights is not None or weights_backbone is not None
    trainable = _validate_trainable_layers(is_trained, trainable_backbone_layers, 6, 6)
    reduce_tail = weights_backbone is None
    if norm_layer is None:
        norm_layer = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
    backbone = mobilenet_v3_large(weights=weights_backbone, progress=progress,
                                  norm_layer=norm_layer, reduced_tail=reduce_tail)  # fmt: skip
    if weights_backbone is None:
        _normal_init(backbone)
    backbone = _mobilenet_extractor(backbone, trainable, norm_layer)
    size = (320, 320)
    anchor_generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2,
                                           max_ratio=0.95)  # fmt: skip
    out_channels = det_utils.retrieve_out_channels(backbone, size)
    num_anchors = anchor_generator.num_anchors_per_location()
    head = SSDLiteHead(out_channels, num_anchors, num_classes, norm_layer)
    defaults = {
        "score_thresh": 0.001, "nms_thresh": 0.55, "detections_per_img": 300,
        "topk_candidates": 300, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    }  # fmt: skip
    model = SSD(backbone, anchor_generator, size, num_classes, head=head,
                **{**defaults, **kwargs})  # fmt: skip
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    return model
