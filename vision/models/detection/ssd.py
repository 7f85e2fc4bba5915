"""SSD (Liu et al. 2016, single shot multibox detector) with a VGG-16 backbone
(torchvision.models.detection.ssd): ``SSD``, its heads, the VGG feature extractor and
``ssd300_vgg16``. The default boxes come from ``anchor_utils.DefaultBoxGenerator``."""

from __future__ import annotations

import warnings
from collections import OrderedDict
from typing import Any

import ember
from ember import Tensor, nn
from ember.nn import functional as F

from ...ops import boxes as box_ops
from .._api import WeightsEnum
from ..vgg import VGG, VGG16_Weights, vgg16
from . import _utils as det_utils
from ._single_stage import _coco_weights, _flatten_level, _SingleStageDetector
from .anchor_utils import DefaultBoxGenerator
from .backbone_utils import _validate_trainable_layers
from .faster_rcnn import _resolve_num_classes
from .transform import GeneralizedRCNNTransform

__all__ = [
    "SSD",
    "SSD300_VGG16_Weights",
    "SSDClassificationHead",
    "SSDFeatureExtractorVGG",
    "SSDHead",
    "SSDRegressionHead",
    "ssd300_vgg16",
]


def _xavier_init(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.xavier_uniform_(layer.weight)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0.0)


class SSDScoringHead(nn.Module):
    """One prediction module per feature map (``module_list[i]`` for map ``i``); the outputs,
    ``num_columns`` per default box, concatenated over the maps as ``(N, boxes, columns)``."""

    def __init__(self, module_list: nn.ModuleList, num_columns: int) -> None:
        super().__init__()
        self.module_list = module_list
        self.num_columns = num_columns

    def forward(self, x: list[Tensor]) -> Tensor:
        if len(x) != len(self.module_list):
            raise ValueError(
                f"{type(self).__name__} was built for {len(self.module_list)} feature maps, "
                f"got {len(x)}"
            )
        return ember.cat(
            [_flatten_level(m(f), self.num_columns) for m, f in zip(self.module_list, x)], dim=1
        )


class SSDClassificationHead(SSDScoringHead):
    """A 3x3 convolution per map giving ``num_classes`` logits per default box (softmax over
    the classes, 0 the background)."""

    def __init__(self, in_channels: list[int], num_anchors: list[int], num_classes: int) -> None:
        convs = nn.ModuleList(
            nn.Conv2d(c, num_classes * a, kernel_size=3, padding=1)
            for c, a in zip(in_channels, num_anchors)
        )
        _xavier_init(convs)
        super().__init__(convs, num_classes)


class SSDRegressionHead(SSDScoringHead):
    """A 3x3 convolution per map giving 4 box deltas per default box."""

    def __init__(self, in_channels: list[int], num_anchors: list[int]) -> None:
        convs = nn.ModuleList(
            nn.Conv2d(c, 4 * a, kernel_size=3, padding=1) for c, a in zip(in_channels, num_anchors)
        )
        _xavier_init(convs)
        super().__init__(convs, 4)


class SSDHead(nn.Module):
    """SSD's classification and regression heads over the feature maps."""

    def __init__(self, in_channels: list[int], num_anchors: list[int], num_classes: int) -> None:
        super().__init__()
        self.classification_head = SSDClassificationHead(in_channels, num_anchors, num_classes)
        self.regression_head = SSDRegressionHead(in_channels, num_anchors)

    def forward(self, x: list[Tensor]) -> dict[str, Tensor]:
        return {
            "bbox_regression": self.regression_head(x),
            "cls_logits": self.classification_head(x),
        }


class SSD(_SingleStageDetector):
    """SSD over any ``backbone`` returning an ordered dict of maps, with ``anchor_generator``
    a :class:`DefaultBoxGenerator` (one aspect-ratio list per map) and every image resized to
    ``size`` ``(w, h)``. Each ground truth takes its best default box plus every box of IoU
    ``>= iou_thresh``; the classification loss keeps the positives and the hardest negatives,
    ``(1 - positive_fraction) / positive_fraction`` of them per positive (hard negative
    mining). Training returns ``{"bbox_regression", "classification"}``; eval returns
    ``boxes``, ``scores``, ``labels`` per image (softmax scores, per-class top-k and NMS)."""

    def __init__(
        self,
        backbone: nn.Module,
        anchor_generator: DefaultBoxGenerator,
        size: tuple[int, int],
        num_classes: int,
        image_mean: list[float] | None = None,
        image_std: list[float] | None = None,
        head: nn.Module | None = None,
        score_thresh: float = 0.01,
        nms_thresh: float = 0.45,
        detections_per_img: int = 200,
        iou_thresh: float = 0.5,
        topk_candidates: int = 400,
        positive_fraction: float = 0.25,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(anchor_generator, DefaultBoxGenerator):
            raise TypeError(
                f"anchor_generator should be of type DefaultBoxGenerator instead of "
                f"{type(anchor_generator)}"
            )
        self.backbone = backbone
        self.anchor_generator = anchor_generator
        self.box_coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        if head is None:
            if hasattr(backbone, "out_channels"):
                out_channels = backbone.out_channels
            else:
                out_channels = det_utils.retrieve_out_channels(backbone, size)
            if len(out_channels) != len(anchor_generator.aspect_ratios):
                raise ValueError(
                    f"The length of the output channels from the backbone ({len(out_channels)}) "
                    "do not match the length of the anchor generator aspect ratios "
                    f"({len(anchor_generator.aspect_ratios)})"
                )
            num_anchors = self.anchor_generator.num_anchors_per_location()
            head = SSDHead(out_channels, num_anchors, num_classes)
        self.head = head
        self.proposal_matcher = det_utils.SSDMatcher(iou_thresh)
        image_mean = image_mean or [0.485, 0.456, 0.406]
        image_std = image_std or [0.229, 0.224, 0.225]
        self.transform = GeneralizedRCNNTransform(
            min(size), max(size), image_mean, image_std, size_divisible=1, fixed_size=size,
            **kwargs,
        )  # fmt: skip
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.topk_candidates = topk_candidates
        self.neg_to_pos_ratio = (1.0 - positive_fraction) / positive_fraction

    def compute_loss(self, targets, head_outputs, anchors, matched_idxs) -> dict[str, Tensor]:
        bbox_regression = head_outputs["bbox_regression"]
        cls_logits = head_outputs["cls_logits"]
        num_foreground = 0
        bbox_loss, cls_targets = [], []
        for target, regression, logits, anc, matched in zip(
            targets, bbox_regression, cls_logits, anchors, matched_idxs
        ):
            foreground = ember.where(matched >= 0)[0]
            gt_idx = matched[foreground]
            num_foreground += int(gt_idx.numel())
            target_regression = self.box_coder.encode_single(
                target["boxes"][gt_idx], anc[foreground]
            )
            bbox_loss.append(
                F.smooth_l1_loss(regression[foreground], target_regression, reduction="sum")
            )
            gt_classes = ember.zeros((logits.shape[0],), dtype=target["labels"].dtype)
            gt_classes[foreground] = target["labels"][gt_idx]
            cls_targets.append(gt_classes)
        bbox_loss = ember.stack(bbox_loss)
        cls_targets = ember.stack(cls_targets)
        num_classes = cls_logits.shape[-1]
        cls_loss = F.cross_entropy(
            cls_logits.reshape(-1, num_classes), cls_targets.reshape(-1), reduction="none"
        ).view(cls_targets.shape)
        # hard negative mining: per image, the neg_to_pos_ratio x positives background boxes
        # with the highest loss (rank of each box's loss among the image's negatives)
        foreground_mask = cls_targets > 0
        num_negative = self.neg_to_pos_ratio * foreground_mask.sum(1, keepdim=True)
        negative_loss = cls_loss.detach().clone()
        negative_loss[foreground_mask] = -float("inf")
        _, idx = negative_loss.sort(1, descending=True)
        background_mask = idx.sort(1)[1] < num_negative
        n = max(1, num_foreground)
        return {
            "bbox_regression": bbox_loss.sum() / n,
            "classification": (cls_loss[foreground_mask].sum() + cls_loss[background_mask].sum())
            / n,
        }

    def postprocess_detections(self, head_outputs, image_anchors, image_shapes):
        pred_scores = F.softmax(head_outputs["cls_logits"], dim=-1)
        num_classes = int(pred_scores.shape[-1])
        detections = []
        for regression, scores, anchors, image_shape in zip(
            head_outputs["bbox_regression"], pred_scores, image_anchors, image_shapes
        ):
            boxes = self.box_coder.decode_single(regression, anchors)
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            image_boxes, image_scores, image_labels = [], [], []
            for label in range(1, num_classes):  # 0 is the background
                score = scores[:, label]
                keep = score > self.score_thresh
                score, box = score[keep], boxes[keep]
                score, idxs = score.topk(min(self.topk_candidates, int(score.numel())))
                image_boxes.append(box[idxs])
                image_scores.append(score)
                image_labels.append(ember.full_like(score, label, dtype=ember.int64))
            detections.append(self._nms(image_boxes, image_scores, image_labels))
        return detections

    def forward(self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None):
        images, targets, features, original_image_sizes = self._features(images, targets)
        head_outputs = self.head(features)
        anchors = self.anchor_generator(images, features)
        if self.training:
            matched_idxs = []
            for anc, target in zip(anchors, targets):
                if target["boxes"].numel() == 0:
                    matched_idxs.append(ember.full((anc.shape[0],), -1, dtype=ember.int64))
                    continue
                matched_idxs.append(self.proposal_matcher(box_ops.box_iou(target["boxes"], anc)))
            return self.compute_loss(targets, head_outputs, anchors, matched_idxs)
        detections = self.postprocess_detections(head_outputs, anchors, images.image_sizes)
        return self.transform.postprocess(detections, images.image_sizes, original_image_sizes)


class SSDFeatureExtractorVGG(nn.Module):
    """VGG-16's convolutions up to conv4_3 (``features``, its map L2-normalized and scaled
    by the learned ``scale_weight``), then conv5 with a 3x3 pool, the dilated fc6 and 1x1 fc7
    (``extra[0]``) and four (SSD512: five) more stride-reducing blocks: six (seven) maps."""

    def __init__(self, backbone: nn.Sequential, highres: bool) -> None:
        super().__init__()
        pools = [i for i, layer in enumerate(backbone) if isinstance(layer, nn.MaxPool2d)]
        if len(pools) != 5:
            raise ValueError(f"expected VGG features with 5 max pools, got {len(pools)}")
        maxpool3_pos, maxpool4_pos = pools[2], pools[3]
        backbone[maxpool3_pos].ceil_mode = True  # 75 -> 38 at 300 px, as the paper's maps
        self.scale_weight = nn.Parameter(ember.ones(512) * 20)
        self.features = nn.Sequential(*backbone[:maxpool4_pos])

        def block(cin, mid, cout, **conv):
            return nn.Sequential(
                nn.Conv2d(cin, mid, kernel_size=1), nn.ReLU(inplace=True),
                nn.Conv2d(mid, cout, **conv), nn.ReLU(inplace=True),
            )  # fmt: skip

        extra = nn.ModuleList([
            block(1024, 256, 512, kernel_size=3, padding=1, stride=2),  # conv8_2
            block(512, 128, 256, kernel_size=3, padding=1, stride=2),  # conv9_2
            block(256, 128, 256, kernel_size=3),  # conv10_2
            block(256, 128, 256, kernel_size=3),  # conv11_2
        ])  # fmt: skip
        if highres:
            extra.append(block(256, 128, 256, kernel_size=4))  # SSD512's conv12_2
        _xavier_init(extra)
        fc = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=False),  # pool5
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),  # fc6, atrous
            nn.ReLU(inplace=True),
            nn.Conv2d(1024, 1024, kernel_size=1),  # fc7
            nn.ReLU(inplace=True),
        )
        _xavier_init(fc)
        extra.insert(0, nn.Sequential(*backbone[maxpool4_pos:-1], fc))  # conv5_3, no maxpool5
        self.extra = extra

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.features(x)
        output = [self.scale_weight.view(1, -1, 1, 1) * F.normalize(x)]
        for block in self.extra:
            x = block(x)
            output.append(x)
        return OrderedDict((str(i), v) for i, v in enumerate(output))


def _vgg_extractor(backbone: VGG, highres: bool, trainable_layers: int) -> SSDFeatureExtractorVGG:
    features = backbone.features
    # stages start at the layer after each max pool; the first trainable_layers from the end
    # train, the earlier ones freeze
    stage_indices = [0] + [i for i, b in enumerate(features) if isinstance(b, nn.MaxPool2d)][:-1]
    num_stages = len(stage_indices)
    if not 0 <= trainable_layers <= num_stages:
        raise ValueError(f"trainable_layers should be in the range [0, {num_stages}]. "
                         f"Instead got {trainable_layers}")  # fmt: skip
    freeze_before = (
        len(features) if trainable_layers == 0 else stage_indices[num_stages - trainable_layers]
    )
    for b in features[:freeze_before]:
        for parameter in b.parameters():
            parameter.requires_grad_(False)
    return SSDFeatureExtractorVGG(features, highres)


class SSD300_VGG16_Weights(WeightsEnum):
    """torchvision's COCO checkpoint for :func:`ssd300_vgg16` (box mAP 25.1)."""

    COCO_V1 = _coco_weights(
        "https://download.pytorch.org/models/ssd300_vgg16_coco-b556d3b4.pth",
        35641826, 25.1,
        "https://github.com/pytorch/vision/tree/main/references/detection#ssd300-vgg16",
    )  # fmt: skip
    DEFAULT = COCO_V1


def ssd300_vgg16(
    *,
    weights: SSD300_VGG16_Weights | str | None = None,
    progress: bool = True,
    num_classes: int | None = None,
    weights_backbone: VGG16_Weights | str | None = VGG16_Weights.IMAGENET1K_FEATURES,
    trainable_backbone_layers: int | None = None,
    **kwargs: Any,
) -> SSD:
    """SSD300 with a VGG-16 backbone: inputs resized to 300 x 300, six maps (38^2 ... 1^2
    cells) and 8732 default boxes. ``weights`` (COCO) or ``weights_backbone`` (the SSD
    authors' VGG-16 features, the default as in torchvision) load a checkpoint; pass
    ``weights_backbone=None`` for random weights. The inputs are scaled back to 0-255 and
    mean-subtracted, as that backbone expects."""
    weights = SSD300_VGG16_Weights.verify(weights)
    weights_backbone = VGG16_Weights.verify(weights_backbone)
    if "size" in kwargs:
        warnings.warn(
            "The size of the model is already fixed; ignoring the parameter.", stacklevel=2
        )
        kwargs.pop("size")
    if weights is not None:
        weights_backbone = None
    num_classes = _resolve_num_classes(weights, num_classes)
    is_trained = weights is not None or weights_backbone is not None
    trainable = _validate_trainable_layers(is_trained, trainable_backbone_layers, 5, 4)
    backbone = _vgg_extractor(vgg16(weights=weights_backbone, progress=progress), False, trainable)
    anchor_generator = DefaultBoxGenerator(
        [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
        scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
        steps=[8, 16, 32, 64, 100, 300],
    )
    defaults = {"image_mean": [0.48235, 0.45882, 0.40784], "image_std": [1.0 / 255.0] * 3}
    model = SSD(backbone, anchor_generator, (300, 300), num_classes, **{**defaults, **kwargs})
    if weights is not None:
        model.load_state_dict(weights.get_state_dict(progress=progress, check_hash=True))
    return model
