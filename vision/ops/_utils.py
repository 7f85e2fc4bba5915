"""Checks and conversions the RoI operators share."""

from __future__ import annotations

import numpy as np

import ember
from ember import Tensor

__all__ = [
    "check_roi_boxes_shape",
    "convert_boxes_to_roi_format",
    "host_rois",
    "pair",
    "split_normalization_params",
]


def pair(size) -> tuple[int, int]:
    """``output_size`` as ``(height, width)``."""
    if isinstance(size, int):
        return size, size
    size = tuple(size)
    if len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError(f"output_size must be an int or a pair of ints, got {size}")
    return int(size[0]), int(size[1])


def check_roi_boxes_shape(boxes) -> None:
    """Boxes are a ``(K, 5)`` tensor of ``(batch_index, x1, y1, x2, y2)`` rows or a list of
    ``(L, 4)`` tensors, one per image."""
    if isinstance(boxes, (list, tuple)):
        for b in boxes:
            if not isinstance(b, Tensor) or b.dim() != 2 or b.shape[1] != 4:
                shape = tuple(b.shape) if isinstance(b, Tensor) else type(b).__name__
                raise ValueError(
                    f"each element of a list of boxes must be a (L, 4) tensor, got {shape}"
                )
    elif isinstance(boxes, Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                f"boxes given as one tensor must have shape (K, 5) (batch index, x1, y1, x2, "
                f"y2), got {tuple(boxes.shape)}"
            )
    else:
        raise TypeError(f"boxes must be a Tensor or a list of Tensors, got {type(boxes).__name__}")


def convert_boxes_to_roi_format(boxes: list[Tensor]) -> Tensor:
    """A list of per-image ``(L, 4)`` boxes as one ``(K, 5)`` tensor with the image index."""
    cat = ember.cat(list(boxes), dim=0)
    idx = ember.cat(
        [ember.full((b.shape[0], 1), i, dtype=cat.dtype, device=cat.device) for i, b in
         enumerate(boxes)],
        dim=0,
    )  # fmt: skip
    return ember.cat([idx, cat], dim=1)


def host_rois(input: Tensor, boxes, name: str) -> np.ndarray:
    """The RoI operators' checks: an ``(N, C, H, W)`` input and boxes in either form whose
    batch indices name one of its images; returns the ``(K, 5)`` rows on the host."""
    if input.dim() != 4:
        raise ValueError(f"{name} expects an (N, C, H, W) input, got {tuple(input.shape)}")
    check_roi_boxes_shape(boxes)
    rois = boxes if isinstance(boxes, Tensor) else convert_boxes_to_roi_format(boxes)
    host = rois.detach().cpu().numpy().astype(np.float64)
    batch = host[:, 0]
    if host.shape[0] and (batch.min() < 0 or batch.max() >= input.shape[0]):
        raise ValueError(
            f"box batch indices must lie in [0, {input.shape[0]}), got "
            f"{sorted({int(b) for b in batch})}"
        )
    return host


def split_normalization_params(
    model: ember.nn.Module, norm_classes: list[type] | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """``(norm_params, other_params)``: the trainable parameters of ``model``'s leaf
    normalization modules, and all the others (torchvision's ``ops._utils`` helper that its
    ``references/`` use for ``--norm-weight-decay``).

    Args:
        model: the model whose parameters are split.
        norm_classes: the normalization module classes; by default batch, layer, group,
            instance and local response normalization.
    """
    nn = ember.nn
    if not norm_classes:
        norm_classes = [
            nn.modules.batchnorm._BatchNorm,
            nn.LayerNorm,
            nn.GroupNorm,
            nn.modules.instancenorm._InstanceNorm,
            nn.LocalResponseNorm,
        ]
    for t in norm_classes:
        if not issubclass(t, nn.Module):
            raise ValueError(f"Class {t} is not a subclass of nn.Module.")
    classes = tuple(norm_classes)
    norm_params: list[Tensor] = []
    other_params: list[Tensor] = []
    for module in model.modules():
        # a module with children contributes only its own direct parameters here; a leaf
        # module's parameters go to one list or the other by its class
        if next(module.children(), None) is not None:
            other_params.extend(p for p in module.parameters(recurse=False) if p.requires_grad)
        elif isinstance(module, classes):
            norm_params.extend(p for p in module.parameters() if p.requires_grad)
        else:
            other_params.extend(p for p in module.parameters() if p.requires_grad)
    return norm_params, other_params
