"""``GeneralizedRCNN``: transform -> backbone -> RPN -> RoI heads -> postprocess, the frame
that Faster R-CNN and Mask R-CNN fill in (torchvision.models.detection.generalized_rcnn)."""

from __future__ import annotations

from collections import OrderedDict

import ember
from ember import Tensor, nn

__all__ = ["GeneralizedRCNN"]


def _check_boxes(targets) -> None:
    """torchvision's check after the transform: every target box has positive height and
    width (one error naming the first bad box and its target)."""
    if targets is None:
        return
    for target_idx, target in enumerate(targets):
        boxes = target["boxes"]
        degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if bool(degenerate.any()):
            bb_idx = int(ember.where(degenerate)[0][0])
            raise ValueError(
                "All bounding boxes should have positive height and width. Found "
                f"invalid box {boxes[bb_idx].tolist()} for target at index {target_idx}."
            )


class GeneralizedRCNN(nn.Module):
    """Call with a list of ``(C, H, W)`` float images (sizes may differ) and, in training,
    one target dict per image (``boxes`` ``(N, 4)`` float ``x1, y1, x2, y2`` in pixels,
    ``labels`` ``(N,)`` int64 with 0 the background, ``masks`` ``(N, H, W)`` uint8 for Mask
    R-CNN). Training returns the loss dict; eval returns one dict per image with ``boxes``,
    ``labels``, ``scores`` (and ``masks`` ``(n, 1, H, W)`` probabilities), in the original
    image's coordinates."""

    def __init__(
        self, backbone: nn.Module, rpn: nn.Module, roi_heads: nn.Module, transform: nn.Module
    ) -> None:
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads

    def _check_targets(self, targets) -> None:
        if targets is None:
            raise ValueError("In training mode, targets should be passed")
        for target in targets:
            boxes = target["boxes"]
            if not isinstance(boxes, Tensor):
                raise TypeError(f"Expected target boxes to be of type Tensor, got {type(boxes)}.")
            if boxes.dim() != 2 or boxes.shape[-1] != 4:
                raise ValueError(
                    "Expected target boxes to be a tensor of shape [N, 4], got "
                    f"{tuple(boxes.shape)}."
                )

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training:
            self._check_targets(targets)
        if isinstance(images, Tensor) and images.dim() == 3:
            raise ValueError("images must be a list of (C, H, W) tensors or an (N, C, H, W) tensor")
        original_image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        images, targets = self.transform(images, targets)
        _check_boxes(targets)
        features = self.backbone(images.tensors)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        proposals, proposal_losses = self.rpn(images, features, targets)
        detections, detector_losses = self.roi_heads(
            features, proposals, images.image_sizes, targets
        )
        detections = self.transform.postprocess(
            detections, images.image_sizes, original_image_sizes
        )
        losses = {}
        losses.update(detector_losses)
        losses.update(proposal_losses)
        return losses if self.training else detections
