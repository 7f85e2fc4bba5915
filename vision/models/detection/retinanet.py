"""RetinaNet (Lin et al. 2017, focal loss for dense detection) with a ResNet-50-FPN backbone
(torchvision.models.detection.retinanet): ``RetinaNet``, its heads, and
``retinanet_resnet50_fpn`` / ``retinanet_resnet50_fpn_v2``."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import ember
from ember import Tensor, nn
from ember.nn import functional as F

from ...ops import boxes as box_ops
from ...ops import misc as misc_nn_ops
from ...ops.feature_pyramid_network import LastLevelP6P7
from ...ops.focal_loss import sigmoid_focal_loss
from ...ops.giou_loss import generalized_box_iou_loss
from .._api import WeightsEnum
from ..resnet import ResNet50_Weights, resnet50
from . import _utils as det_utils
from ._single_stage import _coco_weights, _flatten_level, _SingleStageDetector
from .anchor_utils import AnchorGenerator
from .backbone_utils import _resnet_fpn_extractor, _validate_trainable_layers
from .faster_rcnn import _load_detection_weights, _resolve_num_classes
from .transform import GeneralizedRCNNTransform

__all__ = [
    "RetinaNet",
    "RetinaNetClassificationHead",
    "RetinaNetHead",
    "RetinaNetRegressionHead",
    "RetinaNet_ResNet50_FPN_Weights",
    "RetinaNet_ResNet50_FPN_V2_Weights",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
]


def _conv_tower(in_channels: int, norm_layer) -> nn.Sequential:
    tower = nn.Sequential(
        *[misc_nn_ops.Conv2dNormActivation(in_channels, in_channels, norm_layer=norm_layer)
          for _ in range(4)]
    )  # fmt: skip
    for m in tower.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, std=0.01)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
    return tower


def _rename_v1_conv_keys(state_dict, prefix: str, local_metadata) -> None:
    # checkpoints from before torchvision 0.14 (RetinaNet COCO_V1) hold the tower as bare
    # convs "conv.{2 i}"/ReLUs; they are now Conv2dNormActivation blocks "conv.{i}.0"
    if local_metadata.get("version") is not None and local_metadata["version"] >= 2:
        return
    for i in range(4):
        for kind in ("weight", "bias"):
            old, new = f"{prefix}conv.{2 * i}.{kind}", f"{prefix}conv.{i}.0.{kind}"
            if old in state_dict and new not in state_dict:
                state_dict[new] = state_dict.pop(old)


class RetinaNetClassificationHead(nn.Module):
    """Four 3x3 conv + ReLU layers, then per-anchor class logits (``cls_logits``, its bias set
    so every anchor starts at probability ``prior_probability``). The loss is the sigmoid focal
    loss over the anchors not between the matcher's thresholds, per image divided by its
    number of foreground anchors."""

    _version = 2

    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        num_classes: int,
        prior_probability: float = 0.01,
        norm_layer=None,
    ) -> None:
        super().__init__()
        self.conv = _conv_tower(in_channels, norm_layer)
        self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, 1, 1)
        nn.init.normal_(self.cls_logits.weight, std=0.01)
        nn.init.constant_(
            self.cls_logits.bias, -math.log((1 - prior_probability) / prior_probability)
        )
        self.num_classes = num_classes
        self.num_anchors = num_anchors
        self.BETWEEN_THRESHOLDS = det_utils.Matcher.BETWEEN_THRESHOLDS

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args) -> None:
        _rename_v1_conv_keys(state_dict, prefix, local_metadata)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    def compute_loss(self, targets, head_outputs, matched_idxs) -> Tensor:
        losses = []
        cls_logits = head_outputs["cls_logits"]
        for targets_per_image, logits, matched in zip(targets, cls_logits, matched_idxs):
            foreground = matched >= 0
            num_foreground = int(foreground.sum())
            gt_classes_target = ember.zeros_like(logits)
            gt_classes_target[
                foreground, targets_per_image["labels"][matched[foreground]]
            ] = 1.0  # fmt: skip
            valid = matched != self.BETWEEN_THRESHOLDS
            losses.append(
                sigmoid_focal_loss(logits[valid], gt_classes_target[valid], reduction="sum")
                / max(1, num_foreground)
            )
        return sum(losses) / len(targets)

    def forward(self, x: list[Tensor]) -> Tensor:
        return ember.cat(
            [_flatten_level(self.cls_logits(self.conv(f)), self.num_classes) for f in x], dim=1
        )


def _box_loss(loss_type, box_coder, anchors, matched_gt_boxes, bbox_regression) -> Tensor:
    if loss_type == "l1":
        target = box_coder.encode_single(matched_gt_boxes, anchors)
        return F.l1_loss(bbox_regression, target, reduction="sum")
    if loss_type == "smooth_l1":
        target = box_coder.encode_single(matched_gt_boxes, anchors)
        return F.smooth_l1_loss(bbox_regression, target, reduction="sum", beta=1.0 / 9)
    if loss_type == "giou":
        pred = box_coder.decode_single(bbox_regression, anchors)
        return generalized_box_iou_loss(pred, matched_gt_boxes, reduction="sum")
    raise ValueError(f"Unsupported loss: {loss_type}")


class RetinaNetRegressionHead(nn.Module):
    """Four 3x3 conv + ReLU layers, then per-anchor box deltas (``bbox_reg``). The loss
    (``_loss_type``: ``"l1"``, ``"smooth_l1"`` or ``"giou"``) is over the foreground anchors,
    per image divided by their number."""

    _version = 2

    def __init__(self, in_channels: int, num_anchors: int, norm_layer=None) -> None:
        super().__init__()
        self.conv = _conv_tower(in_channels, norm_layer)
        self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, 3, 1, 1)
        nn.init.normal_(self.bbox_reg.weight, std=0.01)
        nn.init.zeros_(self.bbox_reg.bias)
        self.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        self._loss_type = "l1"

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args) -> None:
        _rename_v1_conv_keys(state_dict, prefix, local_metadata)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args)

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs) -> Tensor:
        losses = []
        bbox_regression = head_outputs["bbox_regression"]
        for targets_per_image, regression, anchors_per_image, matched in zip(
            targets, bbox_regression, anchors, matched_idxs
        ):
            foreground = ember.where(matched >= 0)[0]
            matched_gt_boxes = targets_per_image["boxes"][matched[foreground]]
            loss = _box_loss(
                self._loss_type, self.box_coder, anchors_per_image[foreground],
                matched_gt_boxes, regression[foreground],
            )  # fmt: skip
            losses.append(loss / max(1, foreground.numel()))
        return sum(losses) / max(1, len(targets))

    def forward(self, x: list[Tensor]) -> Tensor:
        return ember.cat([_flatten_level(self.bbox_reg(self.conv(f)), 4) for f in x], dim=1)


class RetinaNetHead(nn.Module):
    """The classification and box-regression subnets shared by every pyramid level."""

    def __init__(self, in_channels: int, num_anchors: int, num_classes: int, norm_layer=None):
        super().__init__()
        self.classification_head = RetinaNetClassificationHead(
            in_channels, num_anchors, num_classes, norm_layer=norm_layer
        )
        self.regression_head = RetinaNetRegressionHead(in_channels, num_anchors, norm_layer)

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs) -> dict[str, Tensor]:
        return {
            "classification": self.classification_head.compute_loss(
                targets, head_outputs, matched_idxs
            ),
            "bbox_regression": self.regression_head.compute_loss(
                targets, head_outputs, anchors, matched_idxs
            ),
        }

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        return {
            "cls_logits": self.classification_head(x),
            "bbox_regression": self.regression_head(x),
        }


class RetinaNet(_SingleStageDetector):
    """RetinaNet over any ``backbone`` with an ``out_channels`` attribute returning one map
    or an ordered dict of maps. Inputs and outputs as :class:`GeneralizedRCNN`; training
    returns ``{"classification", "bbox_regression"}``. ``num_classes`` counts the background
    (91 for COCO); the keyword arguments are torchvision's, with its defaults."""

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
        proposal_matcher: det_utils.Matcher | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 300,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.4,
        topk_candidates: int = 1000,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        det_utils.check_backbone_and_anchors(backbone, anchor_generator)
        self.backbone = backbone
        if anchor_generator is None:
            anchor_generator = _default_anchorgen()
        self.anchor_generator = anchor_generator
        if head is None:
            head = RetinaNetHead(
                backbone.out_channels, anchor_generator.num_anchors_per_location()[0], num_classes
            )
        self.head = head
        if proposal_matcher is None:
            proposal_matcher = det_utils.Matcher(
                fg_iou_thresh, bg_iou_thresh, allow_low_quality_matches=True
            )
        self.proposal_matcher = proposal_matcher
        self.box_coder = det_utils.BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))
        image_mean = image_mean or [0.485, 0.456, 0.406]
        image_std = image_std or [0.229, 0.224, 0.225]
        self.transform = GeneralizedRCNNTransform(
            min_size, max_size, image_mean, image_std, **kwargs
        )
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates

    def compute_loss(self, targets, head_outputs, anchors) -> dict[str, Tensor]:
        matched_idxs = []
        for anchors_per_image, targets_per_image in zip(anchors, targets):
            if targets_per_image["boxes"].numel() == 0:
                matched_idxs.append(
                    ember.full((anchors_per_image.shape[0],), -1, dtype=ember.int64)
                )
                continue
            quality = box_ops.box_iou(targets_per_image["boxes"], anchors_per_image)
            matched_idxs.append(self.proposal_matcher(quality))
        return self.head.compute_loss(targets, head_outputs, anchors, matched_idxs)

    def postprocess_detections(self, head_outputs, anchors, image_shapes):
        detections = []
        for index, (anchors_per_image, image_shape) in enumerate(zip(anchors, image_shapes)):
            boxes, scores, labels = [], [], []
            for regression, logits, anc in zip(
                head_outputs["bbox_regression"], head_outputs["cls_logits"], anchors_per_image
            ):
                num_classes = int(logits.shape[-1])
                s, anchor_idxs, lab = self._select(
                    ember.sigmoid(logits[index]).flatten(), num_classes
                )
                b = self.box_coder.decode_single(regression[index][anchor_idxs], anc[anchor_idxs])
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
            return self.compute_loss(targets, head_outputs, anchors)
        split_outputs, split_anchors = self._split_levels(features, head_outputs, anchors)
        detections = self.postprocess_detections(split_outputs, split_anchors, images.image_sizes)
        return self.transform.postprocess(detections, images.image_sizes, original_image_sizes)


def _default_anchorgen() -> AnchorGenerator:
    # three octave scales (2^0, 2^(1/3), 2^(2/3)) x three ratios per level, P3-P7
    anchor_sizes = tuple((x, int(x * 2 ** (1.0 / 3)), int(x * 2 ** (2.0 / 3)))
                         for x in (32, 64, 128, 256, 512))  # fmt: skip
    return AnchorGenerator(anchor_sizes, ((0.5, 1.0, 2.0),) * len(anchor_sizes))


class RetinaNet_ResNet50_FPN_Weights(WeightsEnum):
    """torchvision's COCO checkpoint for :func:`retinanet_resnet50_fpn` (box mAP 36.4)."""

    COCO_V1 = _coco_weights(
        "https://download.pytorch.org/models/retinanet_resnet50_fpn_coco-eeacb38b.pth",
        34014999, 36.4,
        "https://github.com/pytorch/vision/tree/main/references/detection#retinanet",
    )  # fmt: skip
    DEFAULT = COCO_V1


class RetinaNet_ResNet50_FPN_V2_Weights(WeightsEnum):
    """torchvision's COCO checkpoint for :func:`retinanet_resnet50_fpn_v2` (box mAP 41.5)."""

    COCO_V1 = _coco_weights(
        "https://download.pytorch.org/models/retinanet_resnet50_fpn_v2_coco-5905b1c5.pth",
        38198935, 41.5, "https://github.com/pytorch/vision/pull/5756",
    )  # fmt: skip
    DEFAULT = COCO_V1


def _resnet50_fpn_p6p7(weights, weights_backbone, progress, num_classes, trainable, p6_in):
    is_trained = weights is not None or weights_backbone is not None
    trainable = _validate_trainable_layers(is_trained, trainable, 5, 3)
    # v1 freezes a pretrained backbone's batch norms; v2 (p6_in=2048) never does
    frozen = is_trained and p6_in == 256
    norm_layer = misc_nn_ops.FrozenBatchNorm2d if frozen else nn.BatchNorm2d
    backbone = resnet50(weights=weights_backbone, progress=progress, norm_layer=norm_layer)
    # P3-P5 from layer2-4, P6/P7 from P5 (v1) or C5 (v2, p6_in=2048)
    return _resnet_fpn_extractor(
        backbone, trainable, returned_layers=[2, 3, 4], extra_blocks=LastLevelP6P7(p6_in, 256)
    )


@det_utils.handle_legacy_detection(RetinaNet_ResNet50_FPN_Weights, ResNet50_Weights)
def retinanet_resnet50_fpn(
    *,
    weights: RetinaNet_ResNet50_FPN_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = ResNet50_Weights.IMAGENET1K_V1,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> RetinaNet:
    """RetinaNet, ResNet-50-FPN backbone (P3-P7). ``weights`` (COCO) or ``weights_backbone``
    (ImageNet, the default as in torchvision) load a checkpoint; pass
    ``weights_backbone=None`` for random weights. ``num_classes`` defaults to 91 (COCO)."""
    weights = RetinaNet_ResNet50_FPN_Weights.verify(weights)
    weights_backbone = ResNet50_Weights.verify(weights_backbone)
    if weights is not None:
        weights_backbone = None
    num_classes = _resolve_num_classes(weights, num_classes)
    backbone = _resnet50_fpn_p6p7(
        weights, weights_backbone, progress, num_classes, trainable_backbone_layers, 256
    )
    model = RetinaNet(backbone, num_classes, **kwargs)
    _load_detection_weights(model, weights, progress)
    return model


def retinanet_resnet50_fpn_v2(
    *,
    weights: RetinaNet_ResNet50_FPN_V2_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: ResNet50_Weights | str | None = None,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> RetinaNet:
    """RetinaNet v2 (the tweaks of Zhang et al. 2019, ATSS): P6 from C5, trainable batch
    norms, GroupNorm in the heads and a GIoU box loss. Arguments as
    :func:`retinanet_resnet50_fpn`, except that the backbone starts from random weights
    unless ``weights_backbone`` is given."""
    weights = RetinaNet_ResNet50_FPN_V2_Weights.verify(weights)
    weights_backbone = ResNet50_Weights.verify(weights_backbone)
    if weights is not None:
        weights_backbone = None
    num_classes = _resolve_num_classes(weights, num_classes)
    backbone = _resnet50_fpn_p6p7(
        weights, weights_backbone, progress, num_classes, trainable_backbone_layers, 2048
    )
    anchor_generator = _default_anchorgen()
    head = RetinaNetHead(
        backbone.out_channels, anchor_generator.num_anchors_per_location()[0], num_classes,
        norm_layer=partial(nn.GroupNorm, 32),
    )  # fmt: skip
    head.regression_head._loss_type = "giou"
    model = RetinaNet(backbone, num_classes, anchor_generator=anchor_generator, head=head, **kwargs)
    _load_detection_weights(model, weights, progress)
    return model
