"""The second stage of Faster / Mask / Keypoint R-CNN (torchvision.models.detection.roi_heads):
proposal sampling and matching, the box branch's loss and post-processing, the mask branch's
loss (ground-truth masks RoIAligned onto the proposals), inference and pasting, and the
keypoint branch (its maps in ``_keypoint_ops``)."""

from __future__ import annotations

import ember
from ember import Tensor, nn
from ember.nn import functional as F

from ...ops import boxes as box_ops
from ...ops import roi_align
from . import _utils as det_utils
from ._keypoint_ops import (
    heatmaps_to_keypoints,
    keypointrcnn_inference,
    keypointrcnn_loss,
    keypoints_to_heatmap,
)

__all__ = [
    "RoIHeads",
    "fastrcnn_loss",
    "heatmaps_to_keypoints",
    "keypointrcnn_inference",
    "keypointrcnn_loss",
    "keypoints_to_heatmap",
    "maskrcnn_inference",
    "maskrcnn_loss",
    "paste_masks_in_image",
    "project_masks_on_boxes",
]


def fastrcnn_loss(
    class_logits: Tensor, box_regression: Tensor, labels: list[Tensor],
    regression_targets: list[Tensor],
) -> tuple[Tensor, Tensor]:  # fmt: skip
    """Cross-entropy over the classes of every sampled proposal, and smooth-L1 (``beta=1/9``)
    of the true class's box deltas on the positives, summed and divided by the sample count."""
    labels = ember.cat(labels, dim=0)
    regression_targets = ember.cat(regression_targets, dim=0)
    classification_loss = F.cross_entropy(class_logits, labels)
    pos_inds = ember.where(labels > 0)[0]
    labels_pos = labels[pos_inds]
    n = class_logits.shape[0]
    box_regression = box_regression.reshape(n, box_regression.shape[-1] // 4, 4)
    box_loss = F.smooth_l1_loss(
        box_regression[pos_inds, labels_pos],
        regression_targets[pos_inds],
        beta=1 / 9,
        reduction="sum",
    )
    return classification_loss, box_loss / labels.numel()


def maskrcnn_inference(x: Tensor, labels: list[Tensor]) -> list[Tensor]:
    """The sigmoid mask of each detection's predicted class, ``(n, 1, M, M)`` per image."""
    mask_prob = x.sigmoid()
    boxes_per_image = [label.shape[0] for label in labels]
    labels = ember.cat(labels)
    index = ember.arange(x.shape[0], device=labels.device)
    mask_prob = mask_prob[index, labels][:, None]
    return list(mask_prob.split(boxes_per_image, dim=0))


def project_masks_on_boxes(gt_masks: Tensor, boxes: Tensor, matched_idxs: Tensor, m: int) -> Tensor:
    """Crop each proposal's matched ground-truth mask to the proposal and resample it to
    ``m x m`` with RoIAlign (the mask targets)."""
    matched_idxs = matched_idxs.to(boxes.dtype)
    rois = ember.cat([matched_idxs[:, None], boxes], dim=1)
    gt_masks = gt_masks[:, None].to(rois.dtype)
    return roi_align(gt_masks, rois, (m, m), 1.0)[:, 0]


def maskrcnn_loss(
    mask_logits: Tensor, proposals: list[Tensor], gt_masks: list[Tensor],
    gt_labels: list[Tensor], mask_matched_idxs: list[Tensor],
) -> Tensor:  # fmt: skip
    """Per-pixel binary cross-entropy between the true class's mask logits of each positive
    proposal and its ground-truth mask cropped to the proposal."""
    size = mask_logits.shape[-1]
    labels = [gl[idxs] for gl, idxs in zip(gt_labels, mask_matched_idxs)]
    mask_targets = [
        project_masks_on_boxes(m, p, i, size)
        for m, p, i in zip(gt_masks, proposals, mask_matched_idxs)
    ]
    labels = ember.cat(labels, dim=0)
    mask_targets = ember.cat(mask_targets, dim=0)
    if mask_targets.numel() == 0:
        return mask_logits.sum() * 0
    index = ember.arange(labels.shape[0], device=labels.device)
    return F.binary_cross_entropy_with_logits(mask_logits[index, labels], mask_targets)


def expand_masks(mask: Tensor, padding: int) -> tuple[Tensor, float]:
    m = mask.shape[-1]
    scale = float(m + 2 * padding) / m
    return F.pad(mask, (padding,) * 4), scale


def expand_boxes(boxes: Tensor, scale: float) -> Tensor:
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    x_c = (boxes[:, 2] + boxes[:, 0]) * 0.5
    y_c = (boxes[:, 3] + boxes[:, 1]) * 0.5
    return ember.stack([x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half], dim=1)


def paste_mask_in_image(mask: Tensor, box: list[int], im_h: int, im_w: int) -> Tensor:
    """Resize one ``M x M`` mask (bilinear) to its integer box and place it in an
    ``im_h x im_w`` canvas of zeros, clipped to the image."""
    w = max(int(box[2] - box[0] + 1), 1)
    h = max(int(box[3] - box[1] + 1), 1)
    mask = F.interpolate(mask[None, None], size=(h, w), mode="bilinear", align_corners=False)[0, 0]
    x_0, x_1 = max(box[0], 0), min(box[2] + 1, im_w)
    y_0, y_1 = max(box[1], 0), min(box[3] + 1, im_h)
    im_mask = ember.zeros((im_h, im_w), dtype=mask.dtype, device=mask.device)
    if x_1 > x_0 and y_1 > y_0:
        im_mask[y_0:y_1, x_0:x_1] = mask[
            (y_0 - box[1]) : (y_1 - box[1]), (x_0 - box[0]) : (x_1 - box[0])
        ]
    return im_mask


def paste_masks_in_image(masks: Tensor, boxes: Tensor, img_shape, padding: int = 1) -> Tensor:
    """Masks ``(n, 1, M, M)`` in box coordinates to full-image masks ``(n, 1, H, W)``; the
    masks are padded by ``padding`` cells (and the boxes grown to match) so that their edges
    interpolate towards zero."""
    masks, scale = expand_masks(masks, padding=padding)
    boxes = expand_boxes(boxes, scale).to(ember.int64).tolist()
    im_h, im_w = int(img_shape[0]), int(img_shape[1])
    res = [paste_mask_in_image(m[0], b, im_h, im_w) for m, b in zip(masks, boxes)]
    if res:
        return ember.stack(res, dim=0)[:, None]
    return masks.new_zeros((0, 1, im_h, im_w))


class RoIHeads(nn.Module):
    """Box (and optionally mask) heads over the RPN's proposals. In training, proposals are
    matched to the ground truth (plus the ground-truth boxes themselves), sampled
    ``batch_size_per_image`` per image with ``positive_fraction`` positives, and the losses
    ``loss_classifier``, ``loss_box_reg`` (and ``loss_mask``) returned; in eval, per-class
    boxes are decoded, thresholded at ``score_thresh``, NMS'd per class and the top
    ``detections_per_img`` kept (with their masks)."""

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        fg_iou_thresh: float,
        bg_iou_thresh: float,
        batch_size_per_image: int,
        positive_fraction: float,
        bbox_reg_weights: tuple[float, float, float, float] | None,
        score_thresh: float,
        nms_thresh: float,
        detections_per_img: int,
        mask_roi_pool: nn.Module | None = None,
        mask_head: nn.Module | None = None,
        mask_predictor: nn.Module | None = None,
        keypoint_roi_pool: nn.Module | None = None,
        keypoint_head: nn.Module | None = None,
        keypoint_predictor: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.box_similarity = box_ops.box_iou
        self.proposal_matcher = det_utils.Matcher(fg_iou_thresh, bg_iou_thresh, False)
        self.fg_bg_sampler = det_utils.BalancedPositiveNegativeSampler(
            batch_size_per_image, positive_fraction
        )
        self.box_coder = det_utils.BoxCoder(bbox_reg_weights or (10.0, 10.0, 5.0, 5.0))
        self.box_roi_pool = box_roi_pool
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img
        self.mask_roi_pool = mask_roi_pool
        self.mask_head = mask_head
        self.mask_predictor = mask_predictor
        self.keypoint_roi_pool = keypoint_roi_pool
        self.keypoint_head = keypoint_head
        self.keypoint_predictor = keypoint_predictor

    def has_mask(self) -> bool:
        return not (
            self.mask_roi_pool is None or self.mask_head is None or self.mask_predictor is None
        )

    def has_keypoint(self) -> bool:
        return not (
            self.keypoint_roi_pool is None
            or self.keypoint_head is None
            or self.keypoint_predictor is None
        )

    def assign_targets_to_proposals(self, proposals, gt_boxes, gt_labels):
        matched_idxs, labels = [], []
        for props, gt_b, gt_l in zip(proposals, gt_boxes, gt_labels):
            if gt_b.numel() == 0:  # background image
                clamped = ember.zeros((props.shape[0],), dtype=ember.int64, device=props.device)
                labels_img = ember.zeros((props.shape[0],), dtype=ember.int64, device=props.device)
            else:
                idxs = self.proposal_matcher(self.box_similarity(gt_b, props))
                clamped = idxs.clamp(min=0)
                labels_img = gt_l[clamped].to(ember.int64)
                labels_img[idxs == self.proposal_matcher.BELOW_LOW_THRESHOLD] = 0
                labels_img[idxs == self.proposal_matcher.BETWEEN_THRESHOLDS] = -1
            matched_idxs.append(clamped)
            labels.append(labels_img)
        return matched_idxs, labels

    def subsample(self, labels: list[Tensor]) -> list[Tensor]:
        pos, neg = self.fg_bg_sampler(labels)
        return [ember.where((p + n) > 0)[0] for p, n in zip(pos, neg)]

    def add_gt_proposals(self, proposals: list[Tensor], gt_boxes: list[Tensor]) -> list[Tensor]:
        return [ember.cat((p, gt)) for p, gt in zip(proposals, gt_boxes)]

    def check_targets(self, targets) -> None:
        if targets is None:
            raise ValueError("targets should not be None in training mode")
        for t in targets:
            if "boxes" not in t or "labels" not in t:
                raise ValueError(f"every target needs 'boxes' and 'labels', got keys {list(t)}")
            if self.has_mask() and "masks" not in t:
                raise ValueError("every target should contain 'masks' when training Mask R-CNN")
            if self.has_keypoint() and "keypoints" not in t:
                raise ValueError("every target should contain 'keypoints' for Keypoint R-CNN")

    def select_training_samples(self, proposals, targets):
        self.check_targets(targets)
        dtype, device = proposals[0].dtype, proposals[0].device
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        gt_labels = [t["labels"] for t in targets]
        proposals = self.add_gt_proposals(proposals, gt_boxes)
        matched_idxs, labels = self.assign_targets_to_proposals(proposals, gt_boxes, gt_labels)
        sampled_inds = self.subsample(labels)
        matched_gt_boxes = []
        for i, inds in enumerate(sampled_inds):
            proposals[i] = proposals[i][inds]
            labels[i] = labels[i][inds]
            matched_idxs[i] = matched_idxs[i][inds]
            gt = gt_boxes[i]
            if gt.numel() == 0:
                gt = ember.zeros((1, 4), dtype=dtype, device=device)
            matched_gt_boxes.append(gt[matched_idxs[i]])
        regression_targets = self.box_coder.encode(matched_gt_boxes, proposals)
        return proposals, matched_idxs, labels, regression_targets

    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        num_classes = class_logits.shape[-1]
        boxes_per_image = [p.shape[0] for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals).split(boxes_per_image, 0)
        pred_scores = F.softmax(class_logits, -1).split(boxes_per_image, 0)
        all_boxes, all_scores, all_labels = [], [], []
        for boxes, scores, image_shape in zip(pred_boxes, pred_scores, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            labels = ember.arange(num_classes, device=boxes.device).reshape(1, -1).expand_as(scores)
            # drop the background column, then one candidate per (proposal, class)
            boxes = boxes[:, 1:].reshape(-1, 4)
            scores = scores[:, 1:].reshape(-1)
            labels = labels[:, 1:].reshape(-1)
            inds = ember.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[inds], scores[inds], labels[inds]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)
            keep = keep[: self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    def forward(self, features, proposals, image_shapes, targets=None):
        if targets is not None:
            for t in targets:
                if not t["boxes"].is_floating_point():
                    raise TypeError(f"target boxes must be of float type, got {t['boxes'].dtype}")
                if t["labels"].dtype != ember.int64:
                    raise TypeError(f"target labels must be of int64 type, got {t['labels'].dtype}")
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(
                proposals, targets
            )
        else:
            matched_idxs = labels = regression_targets = None
        box_features = self.box_roi_pool(features, proposals, image_shapes)
        box_features = self.box_head(box_features)
        class_logits, box_regression = self.box_predictor(box_features)
        result: list[dict[str, Tensor]] = []
        losses: dict[str, Tensor] = {}
        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(
                class_logits, box_regression, labels, regression_targets
            )
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        else:
            boxes, scores, labels_out = self.postprocess_detections(
                class_logits, box_regression, proposals, image_shapes
            )
            for b, s, lab in zip(boxes, scores, labels_out):
                result.append({"boxes": b, "labels": lab, "scores": s})
        if self.has_mask():
            if self.training:
                mask_proposals, pos_matched_idxs = [], []
                for i in range(len(proposals)):
                    pos = ember.where(labels[i] > 0)[0]
                    mask_proposals.append(proposals[i][pos])
                    pos_matched_idxs.append(matched_idxs[i][pos])
            else:
                mask_proposals = [r["boxes"] for r in result]
            mask_features = self.mask_roi_pool(features, mask_proposals, image_shapes)
            mask_features = self.mask_head(mask_features)
            mask_logits = self.mask_predictor(mask_features)
            if self.training:
                gt_masks = [t["masks"] for t in targets]
                gt_labels = [t["labels"] for t in targets]
                losses["loss_mask"] = maskrcnn_loss(
                    mask_logits, mask_proposals, gt_masks, gt_labels, pos_matched_idxs
                )
            else:
                probs = maskrcnn_inference(mask_logits, [r["labels"] for r in result])
                for prob, r in zip(probs, result):
                    r["masks"] = prob
        if self.has_keypoint():
            self._keypoint_forward(features, proposals, image_shapes, targets, labels,
                                   matched_idxs, result, losses)  # fmt: skip
        return result, losses

    def _keypoint_forward(self, features, proposals, image_shapes, targets, labels,
                          matched_idxs, result, losses) -> None:  # fmt: skip
        # training: the positive proposals and their ground truths; eval: the detections
        if self.training:
            keypoint_proposals, pos_matched_idxs = [], []
            for i in range(len(proposals)):
                pos = ember.where(labels[i] > 0)[0]
                keypoint_proposals.append(proposals[i][pos])
                pos_matched_idxs.append(matched_idxs[i][pos])
        else:
            keypoint_proposals = [r["boxes"] for r in result]
        keypoint_features = self.keypoint_roi_pool(features, keypoint_proposals, image_shapes)
        keypoint_logits = self.keypoint_predictor(self.keypoint_head(keypoint_features))
        if self.training:
            gt_keypoints = [t["keypoints"] for t in targets]
            losses["loss_keypoint"] = keypointrcnn_loss(
                keypoint_logits, keypoint_proposals, gt_keypoints, pos_matched_idxs
            )
        else:
            probs, scores = keypointrcnn_inference(keypoint_logits, keypoint_proposals)
            for prob, kps, r in zip(probs, scores, result):
                r["keypoints"] = prob
                r["keypoints_scores"] = kps
