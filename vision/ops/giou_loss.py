"""Generalized IoU loss (Rezatofighi et al. 2019) between matched box pairs, as FCOS and
RetinaNet v2 regress with (torchvision.ops.giou_loss)."""

from __future__ import annotations

import ember
from ember import Tensor

__all__ = ["generalized_box_iou_loss"]


def _loss_inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    # element-wise over matching rows, unlike box_iou's all-pairs matrix
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    # a clamped width/height is 0 exactly where torchvision's overlap mask is false, so the
    # values and the gradients agree
    iw = (ember.minimum(x2, x2g) - ember.maximum(x1, x1g)).clamp(min=0)
    ih = (ember.minimum(y2, y2g) - ember.maximum(y1, y1g)).clamp(min=0)
    inter = iw * ih
    union = (x2 - x1) * (y2 - y1) + (x2g - x1g) * (y2g - y1g) - inter
    return inter, union


def generalized_box_iou_loss(
    boxes1: Tensor, boxes2: Tensor, reduction: str = "none", eps: float = 1e-7
) -> Tensor:
    """``1 - GIoU`` of each pair ``(boxes1[i], boxes2[i])`` of ``(x1, y1, x2, y2)`` boxes
    (shapes ``(..., 4)``, broadcastable): ``GIoU = IoU - (C - U) / C`` with ``C`` the area of
    the smallest box enclosing both and ``U`` their union, so the loss is in ``[0, 2]`` and
    still has a gradient for disjoint boxes. ``reduction``: ``"none"``, ``"mean"`` or
    ``"sum"``; ``eps`` keeps the divisions finite for empty boxes."""
    if not isinstance(boxes1, Tensor) or not isinstance(boxes2, Tensor):
        raise TypeError(
            f"boxes1 and boxes2 must be Tensors, got {type(boxes1).__name__} and "
            f"{type(boxes2).__name__}"
        )
    if boxes1.shape[-1] != 4 or boxes2.shape[-1] != 4:
        raise ValueError(
            f"boxes must have a last dimension of 4, got {tuple(boxes1.shape)} and "
            f"{tuple(boxes2.shape)}"
        )
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(
            f"Invalid Value for arg 'reduction': '{reduction} \n Supported reduction modes: "
            "'none', 'mean', 'sum'"
        )
    if not boxes1.is_floating_point():
        boxes1 = boxes1.float()
    if not boxes2.is_floating_point():
        boxes2 = boxes2.float()
    inter, union = _loss_inter_union(boxes1, boxes2)
    iou = inter / (union + eps)
    x1, y1, x2, y2 = boxes1.unbind(dim=-1)
    x1g, y1g, x2g, y2g = boxes2.unbind(dim=-1)
    enclose = (ember.maximum(x2, x2g) - ember.minimum(x1, x1g)) * (
        ember.maximum(y2, y2g) - ember.minimum(y1, y1g)
    )
    loss = 1 - (iou - (enclose - union) / (enclose + eps))
    if reduction == "mean":
        # an empty batch gives a 0 that still carries the graph (torchvision's rule)
        return loss.mean() if loss.numel() > 0 else 0.0 * loss.sum()
    if reduction == "sum":
        return loss.sum()
    return loss
