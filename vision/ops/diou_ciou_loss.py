"""Distance-IoU and Complete-IoU losses (Zheng et al. 2019) between matched box pairs
(torchvision.ops.distance_box_iou_loss, torchvision.ops.complete_box_iou_loss)."""

from __future__ import annotations

import math

import ember
from ember import Tensor

from .giou_loss import _loss_inter_union

__all__ = ["distance_box_iou_loss", "complete_box_iou_loss"]


def _check(boxes1, boxes2, reduction: str) -> tuple[Tensor, Tensor]:
    if not isinstance(boxes1, Tensor) or not isinstance(boxes2, Tensor):
        raise TypeError(
            f"boxes1 and boxes2 must be Tensors, got {type(boxes1).__name__} and "
            f"{type(boxes2).__name__}"
        )
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(
            f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: "
            "'none', 'mean', 'sum'"
        )
    return (
        boxes1 if boxes1.is_floating_point() else boxes1.float(),
        boxes2 if boxes2.is_floating_point() else boxes2.float(),
    )


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        # an empty batch gives a 0 that still carries the graph (torchvision's rule)
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss


def _diou_iou_loss(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> tuple[Tensor, Tensor]:
    inter, union = _loss_inter_union(boxes1, boxes2)
    iou = inter / (union + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    # the squared diagonal of the smallest enclosing box
    diag = (ember.maximum(x2, x2g) - ember.minimum(x1, x1g)) ** 2
    diag = diag + (ember.maximum(y2, y2g) - ember.minimum(y1, y1g)) ** 2 + eps
    # the squared distance between the centres
    centres = ((x2 + x1) / 2 - (x1g + x2g) / 2) ** 2 + ((y2 + y1) / 2 - (y1g + y2g) / 2) ** 2
    return 1 - iou + centres / diag, iou


def distance_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7
) -> Tensor:
    """``1 - IoU + d^2 / c^2`` of each pair ``(boxes1[i], boxes2[i])`` of ``(x1, y1, x2, y2)``
    boxes: ``d`` the distance between their centres, ``c`` the diagonal of the smallest box
    enclosing both. ``reduction``: ``"none"``, ``"mean"`` or ``"sum"``; ``eps`` keeps the
    divisions finite."""
    boxes1, boxes2 = _check(boxes1, boxes2, reduction)
    loss, _ = _diou_iou_loss(boxes1, boxes2, eps)
    return _reduce(loss, reduction)


def complete_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7
) -> Tensor:
    """The distance-IoU loss plus ``alpha * v``: ``v`` measures how the aspect ratios differ
    (``4 / pi^2 (atan(w_gt / h_gt) - atan(w / h))^2``), ``alpha = v / (1 - IoU + v + eps)`` is
    held constant (no gradient). Arguments as :func:`distance_box_iou_loss`."""
    boxes1, boxes2 = _check(boxes1, boxes2, reduction)
    # torchvision computes the distance part with the default eps whatever ``eps`` is
    diou, iou = _diou_iou_loss(boxes1, boxes2)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    v = (4 / math.pi**2) * (
        ember.atan((x2g - x1g) / (y2g - y1g)) - ember.atan((x2 - x1) / (y2 - y1))
    ) ** 2
    with ember.no_grad():
        alpha = v / (1 - iou + v + eps)
    return _reduce(diou + alpha * v, reduction)
