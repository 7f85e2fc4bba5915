"""``torchvision.utils.draw_bounding_boxes`` and ``draw_segmentation_masks``: detections drawn
onto a ``(C, H, W)`` image (Pillow draws the boxes and labels), re-exported by
``ember.vision.utils``."""

from __future__ import annotations

import warnings

import numpy as np

import ember
from ember.tensor import Tensor

__all__ = ["draw_bounding_boxes", "draw_segmentation_masks"]


def _palette(n: int) -> list[tuple[int, int, int]]:
    # torchvision's default colours: object i gets (i * (2^25-1, 2^15-1, 2^21-1)) mod 255
    base = np.array([2**25 - 1, 2**15 - 1, 2**21 - 1], dtype=np.int64)
    return [tuple(int(c) for c in (i * base) % 255) for i in range(n)]


def _parse_colors(colors, n: int) -> list[tuple[int, int, int]]:
    from PIL import ImageColor

    if colors is None:
        return _palette(n)
    if isinstance(colors, list):
        if len(colors) < n:
            raise ValueError(
                f"Number of colors must be equal or larger than the number of objects, but "
                f"got {len(colors)} < {n}."
            )
        chosen = colors[:n]
    else:
        chosen = [colors] * n
    return [
        ImageColor.getrgb(c) if isinstance(c, str) else tuple(int(v) for v in c) for c in chosen
    ]


def _to_uint8_hwc(image: Tensor, name: str) -> np.ndarray:
    if not isinstance(image, Tensor):
        raise TypeError(f"{name}: image must be a Tensor, got {type(image).__name__}")
    if image.dim() != 3:
        raise ValueError(f"{name}: pass individual images, not batches (got {tuple(image.shape)})")
    if image.shape[0] not in (1, 3):
        raise ValueError(f"{name}: only grayscale and RGB images are supported")
    if image.dtype != ember.uint8 and not image.is_floating_point():
        raise ValueError(f"{name}: the image dtype must be uint8 or float, got {image.dtype}")
    arr = image.detach().cpu().numpy()
    if image.is_floating_point():
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{name}: a float image must have values in [0, 1]")
        arr = (arr * 255).round().astype(np.uint8)
    if arr.shape[0] == 1:
        arr = np.repeat(arr, 3, axis=0)
    return np.ascontiguousarray(arr.transpose(1, 2, 0))


def _back(arr_hwc: np.ndarray, like: Tensor) -> Tensor:
    out = ember.from_numpy(np.ascontiguousarray(arr_hwc.transpose(2, 0, 1))).to(like.device)
    return out.to(like.dtype) / 255 if like.is_floating_point() else out


def draw_bounding_boxes(
    image: Tensor,
    boxes: Tensor,
    labels: list[str] | None = None,
    colors=None,
    fill: bool = False,
    width: int = 1,
    font: str | None = None,
    font_size: int | None = None,
    label_colors=None,
) -> Tensor:
    """Draw ``(x1, y1, x2, y2)`` ``boxes`` (pixels) on a uint8 or [0, 1] float ``(C, H, W)``
    image, with optional text ``labels``; returns an RGB image of the input's dtype."""
    from PIL import Image, ImageDraw, ImageFont

    arr = _to_uint8_hwc(image, "draw_bounding_boxes")
    boxes_np = boxes.detach().cpu().numpy().astype(np.float64).reshape(-1, 4)
    if (boxes_np[:, 0] > boxes_np[:, 2]).any() or (boxes_np[:, 1] > boxes_np[:, 3]).any():
        raise ValueError(
            "Boxes need to be in (xmin, ymin, xmax, ymax) format. Use "
            "torchvision.ops.box_convert to convert them"
        )
    n = boxes_np.shape[0]
    if n == 0:
        warnings.warn("boxes doesn't contain any box. No box was drawn", stacklevel=2)
        return _back(arr, image)
    if labels is not None and len(labels) != n:
        raise ValueError(
            f"Number of boxes ({n}) and labels ({len(labels)}) mismatch. Please specify labels "
            "for each box."
        )
    colors = _parse_colors(colors, n)
    label_colors = _parse_colors(label_colors, n) if label_colors is not None else colors
    if font is None:
        txt_font = ImageFont.load_default()
    else:
        txt_font = ImageFont.truetype(font=font, size=font_size or 10)
    img = Image.fromarray(arr)
    draw = ImageDraw.Draw(img, "RGBA" if fill else None)
    for i, bbox in enumerate(boxes_np.astype(np.int64).tolist()):
        color = colors[i]
        if fill:
            draw.rectangle(bbox, width=width, outline=color, fill=color + (100,))
        else:
            draw.rectangle(bbox, width=width, outline=color)
        if labels is not None:
            margin = width + 1
            draw.text(
                (bbox[0] + margin, bbox[1] + margin), labels[i], fill=label_colors[i], font=txt_font
            )
    return _back(np.asarray(img.convert("RGB")), image)


def draw_segmentation_masks(
    image: Tensor, masks: Tensor, alpha: float = 0.8, colors=None
) -> Tensor:
    """Blend boolean ``masks`` ``(N, H, W)`` (or ``(H, W)``) onto a ``(C, H, W)`` image:
    ``image * (1 - alpha) + coloured * alpha`` where a mask is set."""
    arr = _to_uint8_hwc(image, "draw_segmentation_masks").astype(np.float64)
    if masks.dim() == 2:
        masks = masks[None]
    if masks.dim() != 3:
        raise ValueError("masks must be of shape (H, W) or (batch_size, H, W)")
    if masks.dtype != ember.bool:
        raise ValueError(f"The masks must be of dtype bool. Got {masks.dtype}")
    if tuple(masks.shape[-2:]) != tuple(image.shape[-2:]):
        raise ValueError("The image and the masks must have the same height and width")
    m = masks.detach().cpu().numpy()
    if m.shape[0] == 0:
        warnings.warn("masks doesn't contain any mask. No mask was drawn", stacklevel=2)
        return _back(arr.astype(np.uint8), image)
    drawn = arr.copy()
    for mask, color in zip(m, _parse_colors(colors, m.shape[0])):
        drawn[mask] = color
    out = arr * (1 - alpha) + drawn * alpha
    return _back(out.astype(np.uint8), image)


def draw_keypoints(
    image: Tensor,
    keypoints: Tensor,
    connectivity: list[tuple[int, int]] | None = None,
    colors: str | tuple[int, int, int] | None = None,
    radius: int = 2,
    width: int = 3,
    visibility: Tensor | None = None,
) -> Tensor:
    """Draw ``keypoints`` ``(num_instances, K, 2)`` (``[x, y]``) on an RGB image ``(3, H, W)``
    (``uint8``, or float in [0, 1]) as filled circles of ``radius``, joined by lines of
    ``width`` for each ``(i, j)`` of ``connectivity``; ``visibility`` ``(num_instances, K)``
    hides points and the lines that touch them. Returns a new image of the input's dtype."""
    from PIL import Image, ImageDraw

    if not isinstance(image, Tensor):
        raise TypeError(f"The image must be a tensor, got {type(image)}")
    if not (image.dtype == ember.uint8 or image.is_floating_point()):
        raise ValueError(f"The image dtype must be uint8 or float, got {image.dtype}")
    if image.dim() != 3:
        raise ValueError("Pass individual images, not batches")
    if image.shape[0] != 3:
        raise ValueError("Pass an RGB image. Other Image formats are not supported")
    if keypoints.ndim != 3:
        raise ValueError("keypoints must be of shape (num_instances, K, 2)")
    vis = (
        np.ones(tuple(keypoints.shape[:-1]), bool)
        if visibility is None
        else visibility.detach().cpu().numpy().astype(bool)
    )
    if vis.ndim == 3:  # (N, K, 1), as pred.split([2, 1], dim=-1) gives it
        vis = vis[..., 0]
    if vis.ndim != 2:
        raise ValueError(f"visibility must be of shape (num_instances, K). Got ndim={vis.ndim}")
    if vis.shape != tuple(keypoints.shape[:-1]):
        raise ValueError(
            "keypoints and visibility must have the same dimensionality for num_instances and "
            f"K. Got visibility.shape={vis.shape} and keypoints.shape={tuple(keypoints.shape)}"
        )
    arr = image.detach().cpu().numpy()
    if image.is_floating_point():  # v2's to_dtype(uint8, scale=True): truncating
        arr = (arr * (255 + 1.0 - 1e-3)).astype(np.uint8)
    canvas = Image.fromarray(np.ascontiguousarray(arr.transpose(1, 2, 0)))
    draw = ImageDraw.Draw(canvas)
    points = keypoints.detach().cpu().numpy().astype(np.int64).tolist()
    for inst, inst_vis in zip(points, vis.tolist()):
        for (x, y), shown in zip(inst, inst_vis):
            if shown:
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=colors, width=0)
        for i, j in connectivity or ():
            if inst_vis[i] and inst_vis[j]:
                draw.line(((inst[i][0], inst[i][1]), (inst[j][0], inst[j][1])), width=width)
    out = ember.from_numpy(np.ascontiguousarray(np.asarray(canvas).transpose(2, 0, 1)))
    out = out.to(image.device)
    return out.to(image.dtype) / 255 if image.is_floating_point() else out
