"""Faster R-CNN's v2 (Li et al., 2021: a batch-normed FPN, a two-convolution RPN head and a
four-convolution box head) and MobileNetV3-Large-FPN builders; torchvision names them in
``faster_rcnn`` (re-exported there)."""

from __future__ import annotations

from typing import Any

from ember import nn

from ...ops import misc as misc_nn_ops
from .._api import Weights, WeightsEnum
from ..mobilenetv3 import MobileNet_V3_Large_Weights, mobilenet_v3_large
from ..resnet import ResNet50_Weights, resnet50
from . import _utils as det_utils
from .anchor_utils import AnchorGenerator
from .backbone_utils import _mobilenet_extractor, _resnet_fpn_extractor, _validate_trainable_layers
from .faster_rcnn import (
    _COCO_CATEGORIES,
    FasterRCNN,
    FastRCNNConvFCHead,
    _default_anchorgen,
    _detection_transforms,
    _load_detection_weights,
    _resolve_num_classes,
)
from .rpn import RPNHead

__all__ = [
    "FasterRCNN_ResNet50_FPN_V2_Weights",
    "FasterRCNN_MobileNet_V3_Large_FPN_Weights",
    "FasterRCNN_MobileNet_V3_Large_320_FPN_Weights",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
]


def coco_weights(name: str, num_params: int, box_map: float, **metrics) -> Weights:
    """One of torchvision's COCO detection checkpoints."""
    return Weights(
        url=f"https://download.pytorch.org/models/{name}.pth",
        transforms=_detection_transforms(),
        meta={
            "num_params": num_params,
            "categories": _COCO_CATEGORIES,
            "min_size": (1, 1),
            "recipe": "https://github.com/pytorch/vision/tree/main/references/detection",
            "_metrics": {"COCO-val2017": {"box_map": box_map, **metrics}},
        },
    )


class FasterRCNN_ResNet50_FPN_V2_Weights(WeightsEnum):
    """torchvision's COCO checkpoint for :func:`fasterrcnn_resnet50_fpn_v2` (box mAP 46.7)."""

    COCO_V1 = coco_weights("fasterrcnn_resnet50_fpn_v2_coco-dd69338a", 43712278, 46.7)
    DEFAULT = COCO_V1


class FasterRCNN_MobileNet_V3_Large_FPN_Weights(WeightsEnum):
    """torchvision's COCO checkpoint for :func:`fasterrcnn_mobilenet_v3_large_fpn` (box mAP
    32.8)."""

    COCO_V1 = coco_weights("fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7", 19386354, 32.8)
    DEFAULT = COCO_V1


class FasterRCNN_MobileNet_V3_Large_320_FPN_Weights(WeightsEnum):
    """torchvision's COCO checkpoint for :func:`fasterrcnn_mobilenet_v3_large_320_fpn` (box
    mAP 22.8)."""

    COCO_V1 = coco_weights("fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9", 19386354, 22.8)
    DEFAULT = COCO_V1


def v2_parts(weights, weights_backbone, trainable_backbone_layers, progress):
    """The v2 backbone (ResNet-50 with trainable batch norms, a batch-normed FPN), RPN head
    (two convolutions) and box head (four convolutions + one linear), shared with Mask
    R-CNN v2."""
    is_trained = weights is not None or weights_backbone is not None
    layers = _validate_trainable_layers(is_trained, trainable_backbone_layers, 5, 3)
    backbone = resnet50(weights=weights_backbone, progress=progress)
    backbone = _resnet_fpn_extractor(backbone, layers, norm_layer=nn.BatchNorm2d)
    anchor_generator = _default_anchorgen()
    rpn_head = RPNHead(
        backbone.out_channels, anchor_generator.num_anchors_per_location()[0], conv_depth=2
    )
    box_head = FastRCNNConvFCHead(
        (backbone.out_channels, 7, 7), [256, 256, 256, 256], [1024], norm_layer=nn.BatchNorm2d
    )
    return backbone, anchor_generator, rpn_head, box_head


@det_utils.handle_legacy_detection(FasterRCNN_ResNet50_FPN_V2_Weights, ResNet50_Weights)
def fasterrcnn_resnet50_fpn_v2(
    *,
    weights: FasterRCNN_ResNet50_FPN_V2_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FasterRCNN:
    """Faster R-CNN v2 (ResNet-50-FPN with batch norm in the FPN and the heads); arguments as
    :func:`fasterrcnn_resnet50_fpn` (the backbone's batch norms train here)."""
    weights = FasterRCNN_ResNet50_FPN_V2_Weights.verify(weights)
    weights_backbone = ResNet50_Weights.verify(weights_backbone)
    if weights is not None:
        weights_backbone = None
    num_classes = _resolve_num_classes(weights, num_classes)
    backbone, anchors, rpn_head, box_head = v2_parts(
        weights, weights_backbone, trainable_backbone_layers, progress
    )
    model = FasterRCNN(
        backbone,
        num_classes=num_classes,
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        box_head=box_head,
        **kwargs,
    )
    _load_detection_weights(model, weights, progress)
    return model


def _mobilenet_fpn(weights, progress, num_classes, weights_backbone, trainable_layers, **kwargs):
    is_trained = weights is not None or weights_backbone is not None
    trainable_layers = _validate_trainable_layers(is_trained, trainable_layers, 6, 3)
    norm_layer = misc_nn_ops.FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    backbone = mobilenet_v3_large(
        weights=weights_backbone, progress=progress, norm_layer=norm_layer
    )
    backbone = _mobilenet_extractor(backbone, True, trainable_layers)
    anchor_sizes = ((32, 64, 128, 256, 512),) * 3
    aspect_ratios = ((0.5, 1.0, 2.0),) * len(anchor_sizes)
    model = FasterRCNN(
        backbone,
        num_classes,
        rpn_anchor_generator=AnchorGenerator(anchor_sizes, aspect_ratios),
        **kwargs,
    )
    _load_detection_weights(model, weights, progress)
    return model


def _mobilenet_builder(name: str, enum, defaults: dict, doc: str):
    def build(
        *,
        weights=None,
        progress: bool = True,
        num_classes: int | None = None,
        weights_backbone=MobileNet_V3_Large_Weights.IMAGENET1K_V1,
        trainable_backbone_layers: int | None = None,
        **kwargs: Any,
    ) -> FasterRCNN:
        weights = enum.verify(weights)
        weights_backbone = MobileNet_V3_Large_Weights.verify(weights_backbone)
        if weights is not None:
            weights_backbone = None
        num_classes = _resolve_num_classes(weights, num_classes)
        kwargs = {**defaults, **kwargs}
        return _mobilenet_fpn(
            weights, progress, num_classes, weights_backbone, trainable_backbone_layers, **kwargs
        )

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return det_utils.handle_legacy_detection(enum, MobileNet_V3_Large_Weights)(build)


fasterrcnn_mobilenet_v3_large_fpn = _mobilenet_builder(
    "fasterrcnn_mobilenet_v3_large_fpn",
    FasterRCNN_MobileNet_V3_Large_FPN_Weights,
    {"rpn_score_thresh": 0.05},
    """Faster R-CNN on a MobileNetV3-Large-FPN backbone (the last two stages; anchors of five
    sizes at each of three levels), for high-resolution inputs. ``weights_backbone`` defaults
    to the ImageNet MobileNet (a download): pass ``weights_backbone=None`` for random
    initialisation. ``trainable_backbone_layers`` counts stages (0-6, default 3).""",
)
fasterrcnn_mobilenet_v3_large_320_fpn = _mobilenet_builder(
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    FasterRCNN_MobileNet_V3_Large_320_FPN_Weights,
    {
        "min_size": 320,
        "max_size": 640,
        "rpn_pre_nms_top_n_test": 150,
        "rpn_post_nms_top_n_test": 150,
        "rpn_score_thresh": 0.05,
    },
    """:func:`fasterrcnn_mobilenet_v3_large_fpn` tuned for mobile: images resized to 320
    (at most 640) and 150 proposals per image at test time.""",
)
