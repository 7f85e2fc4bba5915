"""Keypoint R-CNN's target and output maps (torchvision.models.detection.roi_heads): ground-truth
keypoints to heatmap cells, the keypoint loss, and heatmaps back to keypoints."""

from __future__ import annotations

import ember
from ember import Tensor
from ember.nn import functional as F

__all__ = [
    "heatmaps_to_keypoints",
    "keypointrcnn_inference",
    "keypointrcnn_loss",
    "keypoints_to_heatmap",
]


def keypoints_to_heatmap(
    keypoints: Tensor, rois: Tensor, heatmap_size: int
) -> tuple[Tensor, Tensor]:
    """For ``(R, K, 3)`` keypoints ``(x, y, visibility)`` and their ``(R, 4)`` RoIs, the
    flat index ``y * S + x`` of each keypoint's cell in the RoI's ``S x S`` heatmap (points on
    the RoI's right/bottom edge go to the last cell) and whether it is usable (visible and
    inside the RoI), both ``(R, K)`` int64."""
    offset_x, offset_y = rois[:, 0:1], rois[:, 1:2]
    scale_x = heatmap_size / (rois[:, 2:3] - rois[:, 0:1])
    scale_y = heatmap_size / (rois[:, 3:4] - rois[:, 1:2])
    x, y = keypoints[..., 0], keypoints[..., 1]
    x_boundary = x == rois[:, 2:3]
    y_boundary = y == rois[:, 3:4]
    x = ((x - offset_x) * scale_x).floor().long()
    y = ((y - offset_y) * scale_y).floor().long()
    x[x_boundary] = heatmap_size - 1
    y[y_boundary] = heatmap_size - 1
    valid_loc = (x >= 0) & (y >= 0) & (x < heatmap_size) & (y < heatmap_size)
    valid = (valid_loc & (keypoints[..., 2] > 0)).long()
    return (y * heatmap_size + x) * valid, valid


def keypointrcnn_loss(
    keypoint_logits: Tensor,
    proposals: list[Tensor],
    gt_keypoints: list[Tensor],
    keypoint_matched_idxs: list[Tensor],
) -> Tensor:
    """Cross-entropy over each ``H x W`` heatmap (one softmax per RoI and keypoint) against
    the ground-truth keypoint's cell, averaged over the usable keypoints (0 with none)."""
    n, k, h, w = keypoint_logits.shape
    if h != w:
        raise ValueError(
            f"keypoint_logits height and width (last two elements of shape) should be equal. "
            f"Instead got H = {h} and W = {w}"
        )
    heatmaps, valid = [], []
    for props, gt_kp, midx in zip(proposals, gt_keypoints, keypoint_matched_idxs):
        hm, v = keypoints_to_heatmap(gt_kp[midx], props, h)
        heatmaps.append(hm.view(-1))
        valid.append(v.view(-1))
    targets = ember.cat(heatmaps, dim=0)
    valid = ember.where(ember.cat(valid, dim=0) > 0)[0]
    if targets.numel() == 0 or len(valid) == 0:
        return keypoint_logits.sum() * 0  # keeps the graph, as torchvision
    keypoint_logits = keypoint_logits.view(n * k, h * w)
    return F.cross_entropy(keypoint_logits[valid], targets[valid])


def heatmaps_to_keypoints(maps: Tensor, rois: Tensor) -> tuple[Tensor, Tensor]:
    """``(R, K, S, S)`` heatmaps of ``(R, 4)`` RoIs to ``(R, K, 3)`` keypoints ``(x, y, 1)``
    in image coordinates and ``(R, K)`` scores: each map is resized (bicubic) to the RoI's
    ceiled size, and its arg-max cell's centre, scaled back to the RoI, is the keypoint; the
    score is the resized map's value there."""
    offset_x, offset_y = rois[:, 0], rois[:, 1]
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    widths_ceil, heights_ceil = widths.ceil(), heights.ceil()
    num_keypoints = maps.shape[1]
    xy_preds = ember.zeros((len(rois), 3, num_keypoints), dtype=ember.float32, device=maps.device)
    end_scores = ember.zeros((len(rois), num_keypoints), dtype=ember.float32, device=maps.device)
    for i in range(len(rois)):
        map_w, map_h = int(widths_ceil[i].item()), int(heights_ceil[i].item())
        roi_map = F.interpolate(
            maps[i][:, None], size=(map_h, map_w), mode="bicubic", align_corners=False
        )[:, 0]
        pos = roi_map.reshape(num_keypoints, -1).argmax(dim=1)
        x_int = pos % map_w
        y_int = ember.div(pos - x_int, map_w, rounding_mode="floor")
        xy_preds[i, 0, :] = (x_int.float() + 0.5) * (widths[i] / map_w) + offset_x[i]
        xy_preds[i, 1, :] = (y_int.float() + 0.5) * (heights[i] / map_h) + offset_y[i]
        xy_preds[i, 2, :] = 1
        end_scores[i, :] = roi_map[ember.arange(num_keypoints), y_int, x_int]
    return xy_preds.permute(0, 2, 1), end_scores


def keypointrcnn_inference(x: Tensor, boxes: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Per image, :func:`heatmaps_to_keypoints` of its detections' heatmaps."""
    kp_probs, kp_scores = [], []
    for xx, bb in zip(x.split([b.shape[0] for b in boxes], dim=0), boxes):
        kp_prob, scores = heatmaps_to_keypoints(xx, bb)
        kp_probs.append(kp_prob)
        kp_scores.append(scores)
    return kp_probs, kp_scores
