"""FCOS (Tian et al. 2019, fully convolutional one-stage detection) with a ResNet-50-FPN
backbone (torchvision.models.detection.fcos): ``FCOS``, its heads and ``fcos_resnet50_fpn``.
Each feature-map cell predicts class scores, its distances to the four box sides and a
centerness score; there are no anchor shapes, one "anchor" per cell only marks its place."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import ember
from ember import Tensor, nn
from ember.nn import functional as F

from ...ops import boxes as box_ops
from ...ops.focal_loss import sigmoid_focal_loss
from ...ops.giou_loss import generalized_box_iou_loss
from .._api import WeightsEnum
from ..resnet import ResNet50_Weights
from . import _utils as det_utils
from ._single_stage import _coco_weights, _flatten_level, _SingleStageDetector
from .anchor_utils import AnchorGenerator
from .faster_rcnn import _load_detection_weights, _resolve_num_classes
from .retinanet import _resnet50_fpn_p6p7
from .transform import GeneralizedRCNNTransform

__all__ = [
    "FCOS",
    "FCOSClassificationHead",
    "FCOSHead",
    "FCOSRegressionHead",
    "FCOS_ResNet50_FPN_Weights",
    "fcos_resnet50_fpn",
]


def _gn_tower(in_channels: int, num_convs: int, norm_layer) -> nn.Sequential:
    # torchvision keeps FCOS's tower flat: conv (with bias), norm, ReLU, repeated
    layers = []
    for _ in range(num_convs):
        layers += [nn.Conv2d(in_channels, in_channels, 3, 1, 1), norm_layer(in_channels), nn.ReLU()]
    tower = nn.Sequential(*layers)
    for m in tower.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.constant_(m.bias, 0)
    return tower


class FCOSClassificationHead(nn.Module):
    """``num_convs`` conv + GroupNorm + ReLU layers, then per-location class logits whose
    bias starts every location at probability ``prior_probability``."""

    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        num_convs: int = 4,
        prior_probability: float = 0.01,
        norm_layer=None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.conv = _gn_tower(in_channels, num_convs, norm_layer or partial(nn.GroupNorm, 32))
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, 1, 1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(
            self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability)
        )

    def forward(self, x: list[Tensor]) -> Tensor:
        return ember.cat(
            [_flatten_level(self.cls_logits(self.conv(f)), self.num_classes) for f in x], dim=1
        )


class FCOSRegressionHead(nn.Module):
    """``num_convs`` conv + GroupNorm + ReLU layers, then per-location side distances
    (``bbox_reg``, through a ReLU so they stay >= 0) and a centerness logit
    (``bbox_ctrness``)."""

    def __init__(
        self, in_channels: int, num_anchors: int, num_convs: int = 4, norm_layer=None
    ) -> None:
        super().__init__()
        self.conv = _gn_tower(in_channels, num_convs, norm_layer or partial(nn.GroupNorm, 32))
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, 3, 1, 1)
        self.bbox_ctrness = nn.Conv2d(in_channels, num_anchors * 1, 3, 1, 1)
        for layer in (self.bbox_reg, self.bbox_ctrness):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, x: list[Tensor]) -> tuple[Tensor, Tensor]:
        regression, ctrness = [], []
        for features in x:
            t = self.conv(features)
            regression.append(_flatten_level(F.relu(self.bbox_reg(t)), 4))
            ctrness.append(_flatten_level(self.bbox_ctrness(t), 1))
        return ember.cat(regression, dim=1), ember.cat(ctrness, dim=1)


class FCOSHead(nn.Module):
    """The classification and regression/centerness subnets. Losses, each summed and divided
    by the number of foreground locations: sigmoid focal loss on the classes, GIoU loss on the
    decoded boxes, and binary cross-entropy of the centerness logits against
    ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of the matched box."""

    def __init__(
        self, in_channels: int, num_anchors: int, num_classes: int, num_convs: int | None = 4
    ) -> None:
        super().__init__()
        self.box_coder = det_utils.BoxLinearCoder(normalize_by_size=True)
        self.classification_head = FCOSClassificationHead(
            in_channels, num_anchors, num_classes, num_convs
        )
        self.regression_head = FCOSRegressionHead(in_channels, num_anchors, num_convs)

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs) -> dict[str, Tensor]:
        cls_logits = head_outputs["cls_logits"]  # (N, HWA, C)
        bbox_regression = head_outputs["bbox_regression"]  # (N, HWA, 4)
        bbox_ctrness = head_outputs["bbox_ctrness"]  # (N, HWA, 1)
        all_classes, all_boxes = [], []
        for targets_per_image, matched in zip(targets, matched_idxs):
            if len(targets_per_image["labels"]) == 0:
                classes = ember.zeros((len(matched),), dtype=ember.int64)
                boxes = ember.zeros((len(matched), 4), dtype=bbox_regression.dtype)
            else:
                classes = targets_per_image["labels"][matched.clamp(min=0)].clone()
                boxes = targets_per_image["boxes"][matched.clamp(min=0)]
            classes[matched < 0] = -1  # background
            all_classes.append(classes)
            all_boxes.append(boxes)
        all_classes = ember.stack(all_classes)
        all_boxes = ember.stack(all_boxes)
        anchors = ember.stack(anchors)

        foreground = all_classes >= 0
        num_foreground = max(1, int(foreground.sum()))
        gt_classes = ember.zeros_like(cls_logits)
        gt_classes[foreground, all_classes[foreground]] = 1.0
        loss_cls = sigmoid_focal_loss(cls_logits, gt_classes, reduction="sum")

        pred_boxes = self.box_coder.decode(bbox_regression, anchors)
        loss_bbox_reg = generalized_box_iou_loss(
            pred_boxes[foreground], all_boxes[foreground], reduction="sum"
        )

        reg_targets = self.box_coder.encode(anchors, all_boxes)
        if len(reg_targets) == 0:
            gt_ctrness = reg_targets.new_zeros(reg_targets.shape[:-1])
        else:
            left_right = reg_targets[:, :, [0, 2]]
            top_bottom = reg_targets[:, :, [1, 3]]
            gt_ctrness = ember.sqrt(
                (left_right.min(dim=-1)[0] / left_right.max(dim=-1)[0])
                * (top_bottom.min(dim=-1)[0] / top_bottom.max(dim=-1)[0])
            )
        pred_ctrness = bbox_ctrness.squeeze(dim=2)
        loss_ctrness = F.binary_cross_entropy_with_logits(
            pred_ctrness[foreground], gt_ctrness[foreground], reduction="sum"
        )
        return {
            "classification": loss_cls / num_foreground,
            "bbox_regression": loss_bbox_reg / num_foreground,
            "bbox_ctrness": loss_ctrness / num_foreground,
        }

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        cls_logits = self.classification_head(x)
        bbox_regression, bbox_ctrness = self.regression_head(x)
        return {
            "cls_logits": cls_logits,
            "bbox_regression": bbox_regression,
            "bbox_ctrness": bbox_ctrness,
        }


class FCOS(_SingleStageDetector):
    """FCOS over any ``backbone`` with an ``out_channels`` attribute. A location is positive
    for a ground-truth box when it lies inside the box, within ``center_sampling_radius``
    strides of its centre, and the box's largest side distance is in the level's range
    (``(4 s, 8 s)`` for a level of anchor size ``s``, open-ended on the first and last
    level); among several such boxes the smallest wins. Inputs and outputs as
    :class:`GeneralizedRCNN`; training returns ``{"classification", "bbox_regression",
    "bbox_ctrness"}``; scores are ``sqrt(sigmoid(class) * sigmoid(centerness))``."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        min_size: int = 800,
        max_size: int = 1333,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        anchor_generator: AnchorGenerator | None = None,
        head: nn.Module | None = None,
        center_sampling_radius: float = 1.5,
        score_thresh: float = 0.2,
        nms_thresh: float = 0.6,
        detections_per_img: int = 100,
        topk_candidates: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        det_utils.check_backbone_and_anchors(backbone, anchor_generator)
        self.backbone = backbone
        if anchor_generator is None:
            anchor_sizes = ((8,), (16,), (32,), (64,), (128,))  # one per level, stride-sized
            anchor_generator = AnchorGenerator(anchor_sizes, ((1.0,),) * len(anchor_sizes))
        self.anchor_generator = anchor_generator
        if self.anchor_generator.num_anchors_per_location()[0] != 1:
            raise ValueError(
                "FCOS needs one anchor per location, got "
                f"{self.anchor_generator.num_anchors_per_location()[0]}"
            )
        if head is None:
            head = FCOSHead(backbone.out_channels, 1, num_classes)
        self.head = head
        self.box_coder = det_utils.BoxLinearCoder(normalize_by_size=True)
        image_mean = image_mean or [0.485, 0.456, 0.406]
        image_std = image_std or [0.229, 0.224, 0.225]
        self.transform = GeneralizedRCNNTransform(
            min_size, max_size, image_mean, image_std, **kwargs
        )
        self.center_sampling_radius = center_sampling_radius
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates

    def _match(self, anchors: Tensor, gt_boxes: Tensor, num_anchors_per_level) -> Tensor:
        """Index of the ground truth each location regresses, or -1."""
        gt_centers = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        anchor_centers = (anchors[:, :2] + anchors[:, 2:]) / 2
        anchor_sizes = anchors[:, 2] - anchors[:, 0]
        # centre sampling: within radius * stride of the box centre (Chebyshev distance)
        offset = (anchor_centers[:, None, :] - gt_centers[None, :, :]).abs().max(dim=2)[0]
        match = offset < self.center_sampling_radius * anchor_sizes[:, None]
        # inside the box: every side distance positive, shape (HWA, G, 4)
        x, y = anchor_centers[:, 0:1], anchor_centers[:, 1:2]
        dist = ember.stack(
            [x - gt_boxes[None, :, 0], y - gt_boxes[None, :, 1],
             gt_boxes[None, :, 2] - x, gt_boxes[None, :, 3] - y], dim=2,
        )  # fmt: skip
        match = match & (dist.min(dim=2)[0] > 0)
        # scale range of the level
        lower = anchor_sizes * 4
        lower[: num_anchors_per_level[0]] = 0
        upper = anchor_sizes * 8
        upper[-num_anchors_per_level[-1] :] = float("inf")
        far = dist.max(dim=2)[0]
        match = match & (far > lower[:, None]) & (far < upper[:, None])
        # the smallest matching box wins
        gt_areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        ranked = match.to(ember.float32) * (1e8 - gt_areas[None, :])
        best, matched = ranked.max(dim=1)
        matched[best < 1e-5] = -1
        return matched

    def compute_loss(self, targets, head_outputs, anchors, num_anchors_per_level):
        matched_idxs = []
        for anchors_per_image, targets_per_image in zip(anchors, targets):
            if targets_per_image["boxes"].numel() == 0:
                matched_idxs.append(
                    ember.full((anchors_per_image.shape[0],), -1, dtype=ember.int64)
                )
                continue
            matched_idxs.append(
                self._match(anchors_per_image, targets_per_image["boxes"], num_anchors_per_level)
            )
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)

    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        detections = []
        for index, (anchors_per_image, image_shape) in enumerate(zip(anchors, image_shapes)):
            boxes, scores, labels = [], [], []
            for regression, logits, ctrness, anc in zip(
                head_outputs["bbox_regression"], head_outputs["cls_logits"],
                head_outputs["bbox_ctrness"], anchors_per_image,
            ):  # fmt: skip
                num_classes = int(logits.shape[-1])
                s = ember.sqrt(ember.sigmoid(logits[index]) * ember.sigmoid(ctrness[index]))
                s, anchor_idxs, lab = self._select(s.flatten(), num_classes)
                b = self.box_coder.decode(regression[index][anchor_idxs], anc[anchor_idxs])
                boxes.append(box_ops.clip_boxes_to_image(b, image_shape))
                scores.append(s)
                labels.append(lab)
            detections.append(self._nms(boxes, scores, labels))
        return detections

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        images, targets, features, original_image_sizes = self._features(images, targets)
        head_outputs = self.head(features)
        anchors = self.anchor_generator(images, features)
        if self.training:
            num_anchors_per_level = [int(f.shape[2] * f.shape[3]) for f in features]
            return self.compute_loss(targets, head_outputs, anchors, num_anchors_per_level)
        split_outputs, split_anchors = self._split_levels(features, head_outputs, anchors)
        detections = self.postprocess_detections(split_outputs, split_anchors, images.image_sizes)
        return self.transform.postprocess(detections, images.image_sizes, original_image_sizes)


class FCOS_ResNet50_FPN_Weights(WeightsEnum):
    """torchvision's COCO checkpoint for :func:`fcos_resnet50_fpn` (box mAP 39.2)."""

    COCO_V1 = _coco_weights(
        "https://download.pytorch.org/models/fcos_resnet50_fpn_coco-99b0c9b7.pth",
        32269600, 39.2,
        "https://github.com/pytorch/vision/tree/main/references/detection#fcos-resnet-50-fpn",
    )  # fmt: skip
    DEFAULT = COCO_V1


@det_utils.handle_legacy_detection(FCOS_ResNet50_FPN_Weights, ResNet50_Weights)
def fcos_resnet50_fpn(
    *,
    weights: FCOS_ResNet50_FPN_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> FCOS:
    """FCOS, ResNet-50-FPN backbone (P3-P7, P6/P7 from P5). ``weights`` (COCO) or
    ``weights_backbone`` (ImageNet, the default as in torchvision) load a checkpoint; pass
    ``weights_backbone=None`` for random weights. ``num_classes`` defaults to 91 (COCO)."""
    weights = FCOS_ResNet50_FPN_Weights.verify(weights)
    weights_backbone = ResNet50_Weights.verify(weights_backbone)
    if weights is not None:
        weights_backbone = None
    num_classes = _resolve_num_classes(weights, num_classes)
    backbone = _resnet50_fpn_p6p7(
        weights, weights_backbone, progress, num_classes, trainable_backbone_layers, 256
    )
    model = FCOS(backbone, num_classes, **kwargs)
    _load_detection_weights(model, weights, progress)
    return model
