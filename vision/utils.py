"""``torchvision.utils``: tile a batch of images into one grid (``make_grid``) and write it to an
image file (``save_image``), the two helpers GAN, VAE and style-transfer scripts call."""

from __future__ import annotations

import math
import os
from typing import BinaryIO

import ember
from ember.tensor import Tensor

from ._draw import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks
from ._flow_image import flow_to_image

__all__ = [
    "draw_bounding_boxes",
    "draw_keypoints",
    "draw_segmentation_masks",
    "flow_to_image",
    "make_grid",
    "save_image",
]


def _as_batch(tensor: Tensor | list[Tensor]) -> Tensor:
    if isinstance(tensor, (list, tuple)):
        if not tensor:
            raise ValueError("make_grid: got an empty list of images")
        tensor = ember.stack(list(tensor), dim=0)
    if not isinstance(tensor, Tensor):
        raise TypeError(f"make_grid: expected a tensor or a list of tensors, got {type(tensor)}")
    if tensor.dim() == 2:  # one (H, W) image
        tensor = tensor.unsqueeze(0)
    if tensor.dim() == 3:  # one (C, H, W) image
        if tensor.size(0) == 1:
            tensor = ember.cat((tensor, tensor, tensor), 0)
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 4:
        raise ValueError(
            f"make_grid: expected images of shape (H, W), (C, H, W) or (B, C, H, W), "
            f"got a tensor of shape {tuple(tensor.shape)}"
        )
    if tensor.size(1) == 1:  # grey batches are shown as RGB, like torchvision
        tensor = ember.cat((tensor, tensor, tensor), 1)
    return tensor


def _normalize_(img: Tensor, value_range: tuple[float, float] | None) -> None:
    low, high = value_range if value_range is not None else (float(img.min()), float(img.max()))
    img.clamp_(min=low, max=high)
    img.sub_(low).div_(max(high - low, 1e-5))


def make_grid(
    tensor: Tensor | list[Tensor],
    nrow: int = 8,
    padding: int = 2,
    normalize: bool = False,
    value_range: tuple[float, float] | None = None,
    scale_each: bool = False,
    pad_value: float = 0.0,
) -> Tensor:
    """Tile images into a grid of ``nrow`` columns with ``padding`` pixels of ``pad_value``
    between them.

    Args:
        tensor: a ``(B, C, H, W)`` batch or a list of same-size ``(C, H, W)`` images; a single
            ``(C, H, W)`` or ``(H, W)`` image is returned as it is (grey made RGB).
        nrow: images per row.
        padding: the border around every image.
        normalize: shift each value into ``[0, 1]`` using ``value_range`` (default: the
            tensor's own min and max).
        value_range: ``(low, high)`` for ``normalize``; values outside are clamped first.
        scale_each: with ``normalize``, each image uses its own min and max.
        pad_value: the value of the padding.

    Returns:
        a ``(C, H', W')`` tensor.
    """
    if nrow < 1:
        raise ValueError(f"make_grid: nrow must be at least 1, got {nrow}")
    with ember.no_grad():
        tensor = _as_batch(tensor)
        if normalize:
            tensor = tensor.clone()  # normalize in place on a copy, never on the caller's images
            if scale_each:
                for img in tensor:
                    _normalize_(img, value_range)
            else:
                _normalize_(tensor, value_range)
        if tensor.size(0) == 1:
            return tensor.squeeze(0)
        nmaps, channels, h, w = tensor.shape
        xmaps = min(nrow, nmaps)
        ymaps = int(math.ceil(float(nmaps) / xmaps))
        height, width = h + padding, w + padding
        grid = tensor.new_full(
            (channels, height * ymaps + padding, width * xmaps + padding), pad_value
        )
        for k in range(nmaps):
            y, x = divmod(k, xmaps)
            top, left = y * height + padding, x * width + padding
            grid[:, top : top + h, left : left + w] = tensor[k]
    return grid


def save_image(
    tensor: Tensor | list[Tensor],
    fp: str | os.PathLike | BinaryIO,
    format: str | None = None,
    **kwargs,
) -> None:
    """Write ``make_grid(tensor, **kwargs)`` as an 8-bit image (values in ``[0, 1]`` map to
    ``0..255``); ``format`` overrides the type Pillow guesses from the file name."""
    from PIL import Image

    grid = make_grid(tensor, **kwargs)
    with ember.no_grad():
        arr = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", ember.uint8)
    Image.fromarray(arr.numpy()).save(fp, format=format)
