"""Box utilities (torchvision.ops.boxes): areas, IoU variants, format conversion, clipping and
non-maximum suppression. Boxes are ``(x1, y1, x2, y2)`` rows unless a format says otherwise;
everything but ``nms``'s selection is differentiable ember code, so it runs on any device."""

from __future__ import annotations

import math

import numpy as np

import ember
from ember import Tensor

__all__ = [
    "batched_nms",
    "box_area",
    "box_convert",
    "box_iou",
    "clip_boxes_to_image",
    "complete_box_iou",
    "distance_box_iou",
    "generalized_box_iou",
    "masks_to_boxes",
    "nms",
    "remove_small_boxes",
]

_FORMATS = ("xyxy", "xywh", "cxcywh")


def _check_boxes(boxes: Tensor, name: str = "boxes") -> None:
    if not isinstance(boxes, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(boxes).__name__}")
    if boxes.dim() != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {tuple(boxes.shape)}")


def _upcast(t: Tensor) -> Tensor:
    # integer boxes would overflow or truncate in the products below (torchvision's rule)
    if t.is_floating_point():
        return t if t.dtype in (ember.float32, ember.float64) else t.float()
    return t if t.dtype in (ember.int32, ember.int64) else t.int()


def box_area(boxes: Tensor) -> Tensor:
    """Area of each ``(x1, y1, x2, y2)`` box: ``(x2 - x1) * (y2 - y1)``, shape ``(N,)``."""
    _check_boxes(boxes)
    boxes = _upcast(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _inter_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    area1, area2 = box_area(boxes1), box_area(boxes2)
    lt = ember.max(boxes1[:, None, :2], boxes2[:, :2])
    rb = ember.min(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = _upcast(rb - lt).clamp(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter, area1[:, None] + area2 - inter


def box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over union of every pair: shape ``(N, M)``."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    inter, union = _inter_union(boxes1, boxes2)
    return inter / union


def generalized_box_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Generalized IoU (Rezatofighi et al. 2019) of every pair: IoU minus the share of the
    smallest enclosing box that the union leaves empty; shape ``(N, M)``, in ``[-1, 1]``."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    inter, union = _inter_union(boxes1, boxes2)
    iou = inter / union
    lti = ember.min(boxes1[:, None, :2], boxes2[:, :2])
    rbi = ember.max(boxes1[:, None, 2:], boxes2[:, 2:])
    whi = _upcast(rbi - lti).clamp(min=0)
    areai = whi[:, :, 0] * whi[:, :, 1]
    return iou - (areai - union) / areai


def _diou_iou(boxes1: Tensor, boxes2: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    iou = box_iou(boxes1, boxes2)
    lti = ember.min(boxes1[:, None, :2], boxes2[:, :2])
    rbi = ember.max(boxes1[:, None, 2:], boxes2[:, 2:])
    whi = _upcast(rbi - lti).clamp(min=0)
    diag_sq = whi[:, :, 0] ** 2 + whi[:, :, 1] ** 2 + eps
    xp, yp = (boxes1[:, 0] + boxes1[:, 2]) / 2, (boxes1[:, 1] + boxes1[:, 3]) / 2
    xg, yg = (boxes2[:, 0] + boxes2[:, 2]) / 2, (boxes2[:, 1] + boxes2[:, 3]) / 2
    centers_sq = _upcast(xp[:, None] - xg[None, :]) ** 2 + _upcast(yp[:, None] - yg[None, :]) ** 2
    return iou - centers_sq / diag_sq, iou


def distance_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Distance IoU (Zheng et al. 2019): IoU minus the squared distance of the centres over
    the squared diagonal of the enclosing box; shape ``(N, M)``."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    return _diou_iou(boxes1, boxes2, eps)[0]


def complete_box_iou(boxes1: Tensor, boxes2: Tensor, eps: float = 1e-7) -> Tensor:
    """Complete IoU (Zheng et al. 2019): distance IoU minus an aspect-ratio penalty
    ``alpha * v`` (``alpha`` held constant, as in the paper); shape ``(N, M)``."""
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    boxes1, boxes2 = _upcast(boxes1), _upcast(boxes2)
    diou, iou = _diou_iou(boxes1, boxes2, eps)
    w_pred = boxes1[:, None, 2] - boxes1[:, None, 0]
    h_pred = boxes1[:, None, 3] - boxes1[:, None, 1]
    w_gt, h_gt = boxes2[:, 2] - boxes2[:, 0], boxes2[:, 3] - boxes2[:, 1]
    v = (4 / math.pi**2) * (ember.atan(w_pred / h_pred) - ember.atan(w_gt / h_gt)) ** 2
    with ember.no_grad():
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


def box_convert(boxes: Tensor, in_fmt: str, out_fmt: str) -> Tensor:
    """Convert boxes between ``"xyxy"`` (corners), ``"xywh"`` (corner + size) and
    ``"cxcywh"`` (centre + size)."""
    for name, fmt in (("in_fmt", in_fmt), ("out_fmt", out_fmt)):
        if fmt not in _FORMATS:
            raise ValueError(
                f"Unsupported Bounding Box Conversions for given {name}={fmt!r}; "
                f"choose from {_FORMATS}"
            )
    if in_fmt == out_fmt:
        return boxes.clone()
    a, b, c, d = boxes.unbind(-1)
    if in_fmt == "xywh":
        a, b, c, d = a, b, a + c, b + d
    elif in_fmt == "cxcywh":
        a, b, c, d = a - 0.5 * c, b - 0.5 * d, a + 0.5 * c, b + 0.5 * d
    # now (x1, y1, x2, y2)
    if out_fmt == "xywh":
        a, b, c, d = a, b, c - a, d - b
    elif out_fmt == "cxcywh":
        a, b, c, d = (a + c) / 2, (b + d) / 2, c - a, d - b
    return ember.stack((a, b, c, d), dim=-1)


def clip_boxes_to_image(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clip ``(..., 4)`` boxes to an image of ``size = (height, width)``."""
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must end in a dimension of 4, got {tuple(boxes.shape)}")
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return ember.stack((x, y), dim=boxes.dim()).reshape(boxes.shape)


def remove_small_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """Indices (int64) of the boxes whose width and height are both at least ``min_size``."""
    _check_boxes(boxes)
    ws, hs = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return ember.where((ws >= min_size) & (hs >= min_size))[0]


def _nms_kept(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    # greedy: walk boxes by decreasing score (stable for ties, as torchvision's CPU kernel),
    # keep one and drop every later box whose IoU with it is above the threshold
    from . import _nms_compiled

    if _nms_compiled.AVAILABLE and boxes.shape[0] >= _nms_compiled.MIN_BOXES:
        return _nms_compiled.nms_kept(boxes, scores, iou_threshold)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[order, i] for i in range(4))
    areas = (x2 - x1) * (y2 - y1)
    alive = np.ones(order.size, dtype=bool)
    kept = []
    for i in range(order.size):
        if not alive[i]:
            continue
        kept.append(order[i])
        rest = np.arange(i + 1, order.size)[alive[i + 1 :]]
        if rest.size == 0:
            break
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):  # empty boxes: NaN, kept
            iou = inter / (areas[i] + areas[rest] - inter)
        alive[rest[iou > iou_threshold]] = False
    return np.asarray(kept, dtype=np.int64)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression: indices (int64) of the boxes kept, by decreasing score. A box is
    dropped when its IoU with a kept, higher-scoring box is greater than ``iou_threshold``."""
    _check_boxes(boxes)
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(
            f"scores must have shape ({boxes.shape[0]},) to match boxes {tuple(boxes.shape)}, "
            f"got {tuple(scores.shape)}"
        )
    b = boxes.detach().cpu().numpy().astype(np.float64, copy=False)
    s = scores.detach().cpu().numpy().astype(np.float64, copy=False)
    return ember.from_numpy(_nms_kept(b, s, float(iou_threshold))).to(boxes.device)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each category of ``idxs``: boxes of different categories never suppress each
    other. Returns the kept indices by decreasing score."""
    _check_boxes(boxes)
    if boxes.numel() == 0:
        return ember.empty((0,), dtype=ember.int64, device=boxes.device)
    # shift each category's boxes by its own offset so that no two categories overlap
    max_coordinate = boxes.max()
    offsets = idxs.to(boxes.dtype) * (max_coordinate + ember.tensor(1, dtype=boxes.dtype))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def masks_to_boxes(masks: Tensor) -> Tensor:
    """The tightest ``(x1, y1, x2, y2)`` box (float32) around each of ``(N, H, W)`` masks'
    nonzero pixels."""
    if masks.numel() == 0:
        return ember.zeros((0, 4), device=masks.device, dtype=ember.float32)
    if masks.dim() != 3:
        raise ValueError(f"masks must have shape (N, H, W), got {tuple(masks.shape)}")
    out = ember.zeros((masks.shape[0], 4), device=masks.device, dtype=ember.float32)
    for i, mask in enumerate(masks):
        y, x = ember.where(mask != 0)
        if y.numel() == 0:
            raise ValueError(f"mask {i} is empty: it has no nonzero pixel to box")
        out[i, 0], out[i, 1] = x.min(), y.min()
        out[i, 2], out[i, 3] = x.max(), y.max()
    return out
