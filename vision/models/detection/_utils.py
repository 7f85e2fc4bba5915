"""Shared pieces of the two-stage detectors (torchvision.models.detection._utils): the box
coder, the IoU matcher and the balanced positive/negative sampler."""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import ember
from ember import Tensor, nn

from ...ops.misc import FrozenBatchNorm2d

__all__ = [
    "BalancedPositiveNegativeSampler",
    "BoxCoder",
    "BoxLinearCoder",
    "Matcher",
    "SSDMatcher",
    "handle_legacy_detection",
    "overwrite_eps",
    "retrieve_out_channels",
]


class BalancedPositiveNegativeSampler:
    """Pick ``batch_size_per_image`` training examples per image, at most
    ``positive_fraction`` of them positive (label >= 1), the rest negative (label 0); labels
    of -1 are ignored. Returns one uint8 mask of positives and one of negatives per image."""

    def __init__(self, batch_size_per_image: int, positive_fraction: float) -> None:
        self.batch_size_per_image = batch_size_per_image
        self.positive_fraction = positive_fraction

    def __call__(self, matched_idxs: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        pos_idx, neg_idx = [], []
        for matched in matched_idxs:
            positive = ember.where(matched >= 1)[0]
            negative = ember.where(matched == 0)[0]
            num_pos = int(self.batch_size_per_image * self.positive_fraction)
            num_pos = min(positive.numel(), num_pos)  # fewer positives: fill with negatives
            num_neg = min(negative.numel(), self.batch_size_per_image - num_pos)
            perm1 = ember.randperm(positive.numel(), device=positive.device)[:num_pos]
            perm2 = ember.randperm(negative.numel(), device=negative.device)[:num_neg]
            pos_mask = ember.zeros_like(matched, dtype=ember.uint8)
            neg_mask = ember.zeros_like(matched, dtype=ember.uint8)
            pos_mask[positive[perm1]] = 1
            neg_mask[negative[perm2]] = 1
            pos_idx.append(pos_mask)
            neg_idx.append(neg_mask)
        return pos_idx, neg_idx


def encode_boxes(reference_boxes: Tensor, proposals: Tensor, weights: Tensor) -> Tensor:
    """Regression targets of ``reference_boxes`` relative to ``proposals`` (Girshick et al.
    2014): ``(wx dx / w, wy dy / h, ww log(gw / w), wh log(gh / h))``."""
    wx, wy, ww, wh = weights[0], weights[1], weights[2], weights[3]
    ex_widths = proposals[:, 2:3] - proposals[:, 0:1]
    ex_heights = proposals[:, 3:4] - proposals[:, 1:2]
    ex_ctr_x = proposals[:, 0:1] + 0.5 * ex_widths
    ex_ctr_y = proposals[:, 1:2] + 0.5 * ex_heights
    gt_widths = reference_boxes[:, 2:3] - reference_boxes[:, 0:1]
    gt_heights = reference_boxes[:, 3:4] - reference_boxes[:, 1:2]
    gt_ctr_x = reference_boxes[:, 0:1] + 0.5 * gt_widths
    gt_ctr_y = reference_boxes[:, 1:2] + 0.5 * gt_heights
    dx = wx * (gt_ctr_x - ex_ctr_x) / ex_widths
    dy = wy * (gt_ctr_y - ex_ctr_y) / ex_heights
    dw = ww * ember.log(gt_widths / ex_widths)
    dh = wh * ember.log(gt_heights / ex_heights)
    return ember.cat((dx, dy, dw, dh), dim=1)


class BoxCoder:
    """Encode boxes as regression targets relative to reference boxes and decode predicted
    deltas back to boxes; ``weights`` scale the four deltas, and ``dw``/``dh`` are clamped to
    ``bbox_xform_clip`` before the exponential so huge boxes cannot overflow."""

    def __init__(
        self,
        weights: tuple[float, float, float, float],
        bbox_xform_clip: float = math.log(1000.0 / 16),
    ) -> None:
        self.weights = weights
        self.bbox_xform_clip = bbox_xform_clip

    def encode(self, reference_boxes: list[Tensor], proposals: list[Tensor]) -> tuple[Tensor, ...]:
        boxes_per_image = [len(b) for b in reference_boxes]
        targets = self.encode_single(ember.cat(reference_boxes, dim=0), ember.cat(proposals, dim=0))
        return targets.split(boxes_per_image, 0)

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        weights = ember.tensor(
            self.weights, dtype=reference_boxes.dtype, device=reference_boxes.device
        )
        return encode_boxes(reference_boxes, proposals, weights)

    def decode(self, rel_codes: Tensor, boxes: list[Tensor]) -> Tensor:
        if not isinstance(boxes, (list, tuple)):
            raise TypeError(f"BoxCoder.decode expects a list of box tensors, got {type(boxes)}")
        if not isinstance(rel_codes, Tensor):
            raise TypeError(f"BoxCoder.decode expects rel_codes as a Tensor, got {type(rel_codes)}")
        box_sum = sum(b.shape[0] for b in boxes)
        concat_boxes = ember.cat(list(boxes), dim=0)
        if box_sum > 0:
            rel_codes = rel_codes.reshape(box_sum, -1)
        pred_boxes = self.decode_single(rel_codes, concat_boxes)
        if box_sum > 0:
            pred_boxes = pred_boxes.reshape(box_sum, -1, 4)
        return pred_boxes

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """Boxes ``(N, 4)`` and deltas ``(N, 4 k)`` to ``(N, 4 k)`` decoded boxes."""
        boxes = boxes.to(rel_codes.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx = rel_codes[:, 0::4] / wx
        dy = rel_codes[:, 1::4] / wy
        dw = ember.clamp(rel_codes[:, 2::4] / ww, max=self.bbox_xform_clip)
        dh = ember.clamp(rel_codes[:, 3::4] / wh, max=self.bbox_xform_clip)
        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = 0.5 * ember.exp(dw) * widths[:, None]
        half_h = 0.5 * ember.exp(dh) * heights[:, None]
        pred = ember.stack(
            (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h),
            dim=2,
        )
        return pred.flatten(1)


class BoxLinearCoder:
    """FCOS's box code: the distances ``(l, t, r, b)`` from a reference box's centre to a
    box's left, top, right and bottom sides, divided by the reference box's width/height when
    ``normalize_by_size``. Works on ``(..., 4)`` tensors of matching shape."""

    def __init__(self, normalize_by_size: bool = True) -> None:
        self.normalize_by_size = normalize_by_size

    def _centre_and_size(self, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        ctr_x = 0.5 * (boxes[..., 0] + boxes[..., 2])
        ctr_y = 0.5 * (boxes[..., 1] + boxes[..., 3])
        size = None
        if self.normalize_by_size:
            w = boxes[..., 2] - boxes[..., 0]
            h = boxes[..., 3] - boxes[..., 1]
            size = ember.stack((w, h, w, h), dim=-1)
        return ctr_x, ctr_y, size

    def encode(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        """The ``(l, t, r, b)`` code of ``proposals`` about ``reference_boxes``' centres."""
        ctr_x, ctr_y, size = self._centre_and_size(reference_boxes)
        targets = ember.stack(
            (
                ctr_x - proposals[..., 0],
                ctr_y - proposals[..., 1],
                proposals[..., 2] - ctr_x,
                proposals[..., 3] - ctr_y,
            ),
            dim=-1,
        )
        return targets / size if size is not None else targets

    def decode(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        """The boxes whose code about ``boxes`` is ``rel_codes`` (the inverse of
        :meth:`encode`)."""
        boxes = boxes.to(dtype=rel_codes.dtype)
        ctr_x, ctr_y, size = self._centre_and_size(boxes)
        if size is not None:
            rel_codes = rel_codes * size
        return ember.stack(
            (
                ctr_x - rel_codes[..., 0],
                ctr_y - rel_codes[..., 1],
                ctr_x + rel_codes[..., 2],
                ctr_y + rel_codes[..., 3],
            ),
            dim=-1,
        )


class Matcher:
    """Assign each prediction (column of an ``(M gt, N pred)`` quality matrix) the ground
    truth it overlaps most: its index when the IoU is ``>= high_threshold``,
    ``BELOW_LOW_THRESHOLD`` (-1) under ``low_threshold``, ``BETWEEN_THRESHOLDS`` (-2) between.
    ``allow_low_quality_matches`` also keeps, for each ground truth, the predictions that tie
    for its highest IoU, whatever the thresholds (Faster R-CNN's RPN rule)."""

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(
        self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False
    ) -> None:
        if low_threshold > high_threshold:
            raise ValueError(
                f"low_threshold ({low_threshold}) must not exceed high_threshold ({high_threshold})"
            )
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        if match_quality_matrix.numel() == 0:
            if match_quality_matrix.shape[0] == 0:
                raise ValueError(
                    "No ground-truth boxes available for one of the images during training"
                )
            raise ValueError("No proposal boxes available for one of the images during training")
        matched_vals, matches = match_quality_matrix.max(dim=0)
        all_matches = matches.clone() if self.allow_low_quality_matches else None
        below = matched_vals < self.low_threshold
        between = (matched_vals >= self.low_threshold) & (matched_vals < self.high_threshold)
        matches[below] = self.BELOW_LOW_THRESHOLD
        matches[between] = self.BETWEEN_THRESHOLDS
        if all_matches is not None:
            self.set_low_quality_matches_(matches, all_matches, match_quality_matrix)
        return matches

    def set_low_quality_matches_(
        self, matches: Tensor, all_matches: Tensor, match_quality_matrix: Tensor
    ) -> None:
        highest_quality_foreach_gt, _ = match_quality_matrix.max(dim=1)
        pairs = ember.where(match_quality_matrix == highest_quality_foreach_gt[:, None])
        pred_inds_to_update = pairs[1]
        matches[pred_inds_to_update] = all_matches[pred_inds_to_update]


class SSDMatcher(Matcher):
    """SSD's matching: a prediction takes the ground truth it overlaps most when the IoU is
    ``>= threshold``, and every ground truth also takes its own best prediction, whatever the
    IoU (the ground truth's index overrides the prediction's own match)."""

    def __init__(self, threshold: float) -> None:
        super().__init__(threshold, threshold, allow_low_quality_matches=False)

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        matches = super().__call__(match_quality_matrix)
        _, best_pred_per_gt = match_quality_matrix.max(dim=1)
        matches[best_pred_per_gt] = ember.arange(
            best_pred_per_gt.shape[0], dtype=ember.int64, device=best_pred_per_gt.device
        )
        return matches


def retrieve_out_channels(model: nn.Module, size: tuple[int, int]) -> list[int]:
    """The channel count of each map ``model`` returns for a ``size`` ``(h, w)`` input, from a
    forward pass on zeros in eval mode (the model's mode is restored)."""
    was_training = model.training
    model.eval()
    with ember.no_grad():
        device = next(model.parameters()).device
        features = model(ember.zeros((1, 3, size[1], size[0]), device=device))
        if isinstance(features, Tensor):
            features = {"0": features}
        out_channels = [int(x.shape[1]) for x in features.values()]
    if was_training:
        model.train()
    return out_channels


def overwrite_eps(model: nn.Module, eps: float) -> None:
    """Set the ``eps`` of every ``FrozenBatchNorm2d`` (the COCO_V1 checkpoints were trained
    with 0.0)."""
    for module in model.modules():
        if isinstance(module, FrozenBatchNorm2d):
            module.eps = eps


def handle_legacy_detection(weights_enum, backbone_enum) -> Callable:
    """Accept the pre-0.13 ``pretrained=`` / ``pretrained_backbone=`` flags of torchvision's
    detection builders, with its deprecation warnings: ``pretrained=True`` means
    ``weights=<weights_enum>.COCO_V1``, ``pretrained_backbone=True`` means
    ``weights_backbone=<backbone_enum>.IMAGENET1K_V1``, ``False`` means ``None``."""

    def outer(builder: Callable) -> Callable:
        @functools.wraps(builder)
        def inner(*args: Any, **kwargs: Any):
            if args:
                raise TypeError(
                    f"{builder.__name__}() takes keyword arguments only (weights=..., "
                    f"num_classes=...); got positional {args!r}"
                )
            for old, new, enum, entry in (
                ("pretrained", "weights", weights_enum, "COCO_V1"),
                ("pretrained_backbone", "weights_backbone", backbone_enum, "IMAGENET1K_V1"),
            ):
                if old not in kwargs:
                    continue
                flag = kwargs.pop(old)
                if new in kwargs:
                    raise ValueError(
                        f"{builder.__name__}(): pass either {new}= or the deprecated {old}=, "
                        "not both"
                    )
                if not isinstance(flag, bool):
                    raise TypeError(f"{builder.__name__}(): {old} must be a bool, got {flag!r}")
                kwargs[new] = enum[entry] if flag else None
                warnings.warn(
                    f"The parameter '{old}' is deprecated since 0.13 and may be removed in the "
                    f"future, please use '{new}' instead.",
                    UserWarning,
                    stacklevel=2,
                )
            return builder(**kwargs)

        return inner

    return outer


def check_backbone_and_anchors(backbone, anchor_generator, name: str = "anchor_generator") -> None:
    """torchvision's constructor checks: the backbone names its ``out_channels``, the anchor
    generator (``name``) is an ``AnchorGenerator`` or None."""
    from .anchor_utils import AnchorGenerator

    if not hasattr(backbone, "out_channels"):
        raise ValueError(
            "backbone should contain an attribute out_channels specifying the number of "
            "output channels (assumed to be the same for all the levels)"
        )
    if not isinstance(anchor_generator, (AnchorGenerator, type(None))):
        raise TypeError(
            f"{name} should be of type AnchorGenerator or None instead of {type(anchor_generator)}"
        )
