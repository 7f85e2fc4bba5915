"""Mask R-CNN (He et al. 2017) with a ResNet-50-FPN backbone
(torchvision.models.detection.mask_rcnn): Faster R-CNN plus a mask branch."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ember import nn

from ...ops import MultiScaleRoIAlign
from ...ops import misc as misc_nn_ops
from .._api import Weights, WeightsEnum
from ..resnet import ResNet50_Weights, resnet50
from . import _utils as det_utils
from ._rcnn_variants import coco_weights, v2_parts
from .backbone_utils import _resnet_fpn_extractor, _validate_trainable_layers
from .faster_rcnn import (
    _COCO_CATEGORIES,
    FasterRCNN,
    _detection_transforms,
    _load_detection_weights,
    _resolve_num_classes,
)

__all__ = [
    "MaskRCNN",
    "MaskRCNNHeads",
    "MaskRCNNPredictor",
    "MaskRCNN_ResNet50_FPN_Weights",
    "MaskRCNN_ResNet50_FPN_V2_Weights",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
]


class MaskRCNNHeads(nn.Sequential):
    """The mask branch's 3x3 convolutions (+norm, +ReLU), one per entry of ``layers``."""

    _version = 2

    def __init__(
        self, in_channels: int, layers: list[int], dilation: int,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:  # fmt: skip
        blocks, next_feature = [], in_channels
        for layer_features in layers:
            blocks.append(
                misc_nn_ops.Conv2dNormActivation(
                    next_feature,
                    layer_features,
                    kernel_size=3,
                    stride=1,
                    padding=dilation,
                    dilation=dilation,
                    norm_layer=norm_layer,
                )  # fmt: skip
            )
            next_feature = layer_features
        super().__init__(*blocks)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        # checkpoints from before torchvision 0.13 name the convs mask_fcn1 ... mask_fcnN
        for i in range(len(self)):
            for kind in ("weight", "bias"):
                old, new = f"{prefix}mask_fcn{i + 1}.{kind}", f"{prefix}{i}.0.{kind}"
                if old in state_dict and new not in state_dict:
                    state_dict[new] = state_dict.pop(old)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


class MaskRCNNPredictor(nn.Sequential):
    """A stride-2 transposed convolution (``conv5_mask``), ReLU, and a 1x1 convolution to one
    mask logit map per class (``mask_fcn_logits``)."""

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int) -> None:
        super().__init__(
            OrderedDict(
                [
                    ("conv5_mask", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
                ]
            )
        )
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")


class MaskRCNN(FasterRCNN):
    """Faster R-CNN with a mask branch: RoIAlign 14x14 (``mask_roi_pool``), four 3x3 convs
    (``mask_head``) and ``MaskRCNNPredictor`` (28x28 logits per class). Training targets need
    ``masks`` ``(N, H, W)`` uint8; eval outputs carry ``masks`` ``(n, 1, H, W)`` in [0, 1]."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int | None = None,
        *args: Any,
        mask_roi_pool: nn.Module | None = None,
        mask_head: nn.Module | None = None,
        mask_predictor: nn.Module | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(mask_roi_pool, (MultiScaleRoIAlign, type(None))):
            raise TypeError(
                f"mask_roi_pool should be of type MultiScaleRoIAlign or None instead of "
                f"{type(mask_roi_pool)}"
            )
        if num_classes is not None and mask_predictor is not None:
            raise ValueError("num_classes should be None when mask_predictor is specified")
        out_channels = backbone.out_channels
        if mask_roi_pool is None:
            mask_roi_pool = MultiScaleRoIAlign(
                ["0", "1", "2", "3"], output_size=14, sampling_ratio=2
            )
        if mask_head is None:
            mask_head = MaskRCNNHeads(out_channels, [256, 256, 256, 256], 1)
        if mask_predictor is None:
            mask_predictor = MaskRCNNPredictor(256, 256, num_classes)
        super().__init__(backbone, num_classes, *args, **kwargs)
        self.roi_heads.mask_roi_pool = mask_roi_pool
        self.roi_heads.mask_head = mask_head
        self.roi_heads.mask_predictor = mask_predictor


class MaskRCNN_ResNet50_FPN_Weights(WeightsEnum):
    """torchvision's COCO checkpoint for :func:`maskrcnn_resnet50_fpn` (box mAP 37.9, mask
    mAP 34.6)."""

    COCO_V1 = Weights(
        url="https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth",
        transforms=_detection_transforms(),
        meta={
            "num_params": 44401393,
            "categories": _COCO_CATEGORIES,
            "min_size": (1, 1),
            "recipe": "https://github.com/pytorch/vision/tree/main/references/detection",
            "_metrics": {"COCO-val2017": {"box_map": 37.9, "mask_map": 34.6}},
        },
    )
    DEFAULT = COCO_V1


@det_utils.handle_legacy_detection(MaskRCNN_ResNet50_FPN_Weights, ResNet50_Weights)
def maskrcnn_resnet50_fpn(
    *,
    weights: MaskRCNN_ResNet50_FPN_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """Mask R-CNN, ResNet-50-FPN backbone; arguments as :func:`fasterrcnn_resnet50_fpn`."""
    weights = MaskRCNN_ResNet50_FPN_Weights.verify(weights)
    weights_backbone = ResNet50_Weights.verify(weights_backbone)
    if weights is not None:
        weights_backbone = None
    num_classes = _resolve_num_classes(weights, num_classes)
    is_trained = weights is not None or weights_backbone is not None
    trainable_backbone_layers = _validate_trainable_layers(
        is_trained, trainable_backbone_layers, 5, 3
    )
    norm_layer = misc_nn_ops.FrozenBatchNorm2d if is_trained else nn.BatchNorm2d
    backbone = resnet50(weights=weights_backbone, progress=progress, norm_layer=norm_layer)
    backbone = _resnet_fpn_extractor(backbone, trainable_backbone_layers)
    model = MaskRCNN(backbone, num_classes=num_classes, **kwargs)
    _load_detection_weights(model, weights, progress)
    return model


class MaskRCNN_ResNet50_FPN_V2_Weights(WeightsEnum):
    """torchvision's COCO checkpoint for :func:`maskrcnn_resnet50_fpn_v2` (box mAP 47.4, mask
    mAP 41.8)."""

    COCO_V1 = coco_weights("maskrcnn_resnet50_fpn_v2_coco-73cbd019", 46359409, 47.4, mask_map=41.8)
    DEFAULT = COCO_V1


@det_utils.handle_legacy_detection(MaskRCNN_ResNet50_FPN_V2_Weights, ResNet50_Weights)
def maskrcnn_resnet50_fpn_v2(
    *,
    weights: MaskRCNN_ResNet50_FPN_V2_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> MaskRCNN:
    """Mask R-CNN v2: :func:`~ember.vision.models.detection.fasterrcnn_resnet50_fpn_v2`'s
    backbone and heads plus a batch-normed mask head; arguments as
    :func:`maskrcnn_resnet50_fpn`."""
    weights = MaskRCNN_ResNet50_FPN_V2_Weights.verify(weights)
    weights_backbone = ResNet50_Weights.verify(weights_backbone)
    if weights is not None:
        weights_backbone = None
    num_classes = _resolve_num_classes(weights, num_classes)
    backbone, anchors, rpn_head, box_head = v2_parts(
        weights, weights_backbone, trainable_backbone_layers, progress
    )
    mask_head = MaskRCNNHeads(backbone.out_channels, [256, 256, 256, 256], 1, nn.BatchNorm2d)
    model = MaskRCNN(
        backbone,
        num_classes=num_classes,
        rpn_anchor_generator=anchors,
        rpn_head=rpn_head,
        box_head=box_head,
        mask_head=mask_head,
        **kwargs,
    )
    _load_detection_weights(model, weights, progress)
    return model
