"""The frame torchvision's single-stage detectors share (RetinaNet, FCOS): the dense heads'
output layout, the input checks, the per-level top-k selection and the batched NMS."""

from __future__ import annotations

from collections import OrderedDict

import ember
from ember import Tensor, nn

from ...ops import boxes as box_ops
from .._api import Weights
from .faster_rcnn import _COCO_CATEGORIES, _detection_transforms
from .generalized_rcnn import GeneralizedRCNN, _check_boxes


def _flatten_level(t: Tensor, k: int) -> Tensor:
    # (N, A * K, H, W) -> (N, H * W * A, K): anchors cell-major, as AnchorGenerator orders them
    n, _, h, w = t.shape
    return t.view(n, -1, k, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, k)


def _coco_weights(url: str, num_params: int, box_map: float, recipe: str) -> Weights:
    return Weights(
        url=url,
        transforms=_detection_transforms(),
        meta={
            "num_params": num_params,
            "categories": _COCO_CATEGORIES,
            "min_size": (1, 1),
            "recipe": recipe,
            "_metrics": {"COCO-val2017": {"box_map": box_map}},
        },
    )


class _SingleStageDetector(nn.Module):
    """The frame RetinaNet and FCOS share: transform -> backbone -> dense head -> (losses |
    per-level top-k, decode, batched NMS -> detections in the original image sizes)."""

    def _features(self, images, targets):
        if self.training:
            GeneralizedRCNN._check_targets(self, targets)
        original_image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        images, targets = self.transform(images, targets)
        _check_boxes(targets)
        features = self.backbone(images.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        return images, targets, list(features.values()), original_image_sizes

    def _split_levels(self, features, head_outputs, anchors):
        # per-level pieces for the per-level top-k of postprocess_detections
        hw = [int(f.shape[2] * f.shape[3]) for f in features]
        a = int(head_outputs["cls_logits"].shape[1]) // sum(hw)
        sizes = [n * a for n in hw]
        split_outputs = {k: list(v.split(sizes, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(anc.split(sizes)) for anc in anchors]
        return split_outputs, split_anchors

    def _select(self, scores: Tensor, num_classes: int):
        """Flattened (anchor, class) scores -> the kept top-k scores, anchor ids and labels."""
        keep = scores > self.score_thresh
        scores = scores[keep]
        topk_idxs = ember.where(keep)[0]
        num_topk = min(self.topk_candidates, int(topk_idxs.numel()))
        scores, idxs = scores.topk(num_topk)
        topk_idxs = topk_idxs[idxs]
        return (
            scores,
            ember.div(topk_idxs, num_classes, rounding_mode="floor"),
            (topk_idxs % num_classes),
        )

    def _nms(self, boxes, scores, labels) -> dict[str, Tensor]:
        boxes, scores, labels = ember.cat(boxes), ember.cat(scores), ember.cat(labels)
        keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)
        keep = keep[: self.detections_per_img]
        return {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
