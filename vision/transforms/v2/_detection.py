"""v2's detection augmentations (torchvision's SSD recipe and detection references):
``RandomPhotometricDistort``, ``RandomZoomOut``, ``RandomIoUCrop`` and
``SanitizeBoundingBoxes``.

Each draws its parameters as torchvision does, call for call (``torch.rand``, ``randint``,
``randperm``, ``uniform_``, float32 arithmetic on the draws), so a seed gives torchvision's
crops, canvases and colour factors. ``RandomIoUCrop`` zeroes the boxes whose centres fall
outside its crop; ``SanitizeBoundingBoxes`` then drops them with their labels and masks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

import ember
from ember.tensor import Tensor

from ... import tv_tensors as tv
from .. import functional as _F
from .._functional_pil import is_pil
from . import functional as F2
from ._augment import find_labels
from ._transform import Transform, _flatten, _kinds

__all__ = [
    "RandomPhotometricDistort",
    "RandomZoomOut",
    "RandomIoUCrop",
    "SanitizeBoundingBoxes",
]


def _size(inpt) -> tuple[int, int]:
    h, w = F2.get_size(inpt)
    return int(h), int(w)


def _as_image(out, like):
    return tv.Image._from_array(out._data) if isinstance(like, tv.Image) else out


def _permute_channels(img, perm: list[int]):
    if is_pil(img):
        from PIL import Image

        arr = np.asarray(img)
        return Image.fromarray(np.ascontiguousarray(arr[..., perm]), mode=img.mode)
    return _as_image(img[..., perm, :, :], img)


class RandomPhotometricDistort(Transform):
    """SSD's photometric distortion: brightness, contrast (before or after the other colour
    changes), saturation and hue, each applied with probability ``p``, then a random channel
    permutation with probability ``p``. Images only; boxes and masks pass through.

    Args:
        brightness, contrast, saturation, hue: the ``(min, max)`` ranges of the factors.
        p: the probability of each distortion.
    """

    _kinds = ("image",)

    def __init__(
        self,
        brightness: tuple[float, float] = (0.875, 1.125),
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue: tuple[float, float] = (-0.05, 0.05),
        p: float = 0.5,
    ) -> None:
        self.brightness, self.contrast = brightness, contrast
        self.saturation, self.hue, self.p = saturation, hue, p

    def _get_params(self, image) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for key in ("brightness", "contrast", "saturation", "hue"):
            lo, hi = getattr(self, key)
            params[key] = (
                float(ember.empty(1).uniform_(lo, hi)) if float(ember.rand(1)) < self.p else None
            )
        params["contrast_before"] = bool(float(ember.rand(())) < 0.5)
        channels = _F.get_dimensions(image)[0]
        params["permutation"] = (
            ember.randperm(channels).tolist() if float(ember.rand(1)) < self.p else None
        )
        return params

    def _transform(self, inpt, kind, params):
        out = inpt
        if params["brightness"] is not None:
            out = _as_image(_F.adjust_brightness(out, params["brightness"]), inpt)
        if params["contrast"] is not None and params["contrast_before"]:
            out = _as_image(_F.adjust_contrast(out, params["contrast"]), inpt)
        if params["saturation"] is not None:
            out = _as_image(_F.adjust_saturation(out, params["saturation"]), inpt)
        if params["hue"] is not None:
            out = _as_image(_F.adjust_hue(out, params["hue"]), inpt)
        if params["contrast"] is not None and not params["contrast_before"]:
            out = _as_image(_F.adjust_contrast(out, params["contrast"]), inpt)
        if params["permutation"] is not None:
            out = _permute_channels(out, params["permutation"])
        return out


class RandomZoomOut(Transform):
    """With probability ``p``, place the sample on a canvas ``side_range`` times larger (one
    random factor for both sides) at a random offset, filled with ``fill``; boxes and masks
    move with the image.

    Args:
        fill: the canvas value (a number, or one per channel).
        side_range: the ``(min, max)`` canvas-to-image size ratio, ``1 <= min <= max``.
        p: the probability of zooming out.
    """

    def __init__(self, fill=0, side_range: tuple[float, float] = (1.0, 4.0), p: float = 0.5):
        if len(side_range) != 2 or side_range[0] < 1.0 or side_range[0] > side_range[1]:
            raise ValueError(f"Invalid side range provided {side_range}.")
        if not 0.0 <= p <= 1.0:
            raise ValueError("`p` should be a floating point value in the interval [0.0, 1.0].")
        self.fill, self.side_range, self.p = fill, tuple(side_range), p

    def __call__(self, *inputs):
        # torchvision's random-apply: one draw first (even at p=1), nothing else when it says no
        if float(ember.rand(1)) >= self.p:
            return inputs if len(inputs) > 1 else inputs[0]
        return super().__call__(*inputs)

    def _get_params(self, image) -> dict[str, Any]:
        h, w = _size(image)
        lo, hi = self.side_range
        r = lo + ember.rand(1) * (hi - lo)  # float32, as torchvision's
        canvas_w, canvas_h = int(w * r), int(h * r)
        r = ember.rand(2)
        left, top = int((canvas_w - w) * r[0]), int((canvas_h - h) * r[1])
        return {"padding": [left, top, canvas_w - (left + w), canvas_h - (top + h)]}

    def _transform(self, inpt, kind, params):
        return F2.pad(inpt, params["padding"], fill=self.fill)


class RandomIoUCrop(Transform):
    """SSD's random crop: pick a minimum IoU from ``sampler_options`` (1.0 or more: no crop),
    then up to ``trials`` random crops (sides ``min_scale``-``max_scale`` of the image, aspect
    ratio within bounds) until one holds the centre of a box and overlaps the boxes it holds
    by at least that IoU. Boxes whose centre lies outside the crop become zeros: follow with
    :class:`SanitizeBoundingBoxes`. The sample must hold an image and bounding boxes.
    """

    def __init__(
        self,
        min_scale: float = 0.3,
        max_scale: float = 1.0,
        min_aspect_ratio: float = 0.5,
        max_aspect_ratio: float = 2.0,
        sampler_options: list[float] | None = None,
        trials: int = 40,
    ) -> None:
        self.min_scale, self.max_scale = min_scale, max_scale
        self.min_aspect_ratio, self.max_aspect_ratio = min_aspect_ratio, max_aspect_ratio
        self.options = (
            [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
            if sampler_options is None
            else list(sampler_options)
        )
        self.trials = trials

    def _sample_params(self, leaves, kinds, reference) -> dict[str, Any]:
        boxes = [x for x, k in zip(leaves, kinds) if k == "boxes"]
        if len(boxes) != 1 or "image" not in kinds:
            raise TypeError(
                "RandomIoUCrop() requires input sample to contain tensor or PIL images and "
                "bounding boxes. Sample can also contain masks."
            )
        return self._crop(reference, boxes[0])

    def _crop(self, image, boxes: tv.BoundingBoxes) -> dict[str, Any]:
        from ember.vision.ops import box_iou

        h, w = _size(image)
        xyxy = F2.convert_bounding_box_format(boxes, new_format="XYXY").as_subclass_of_tensor()
        cx, cy = 0.5 * (xyxy[..., 0] + xyxy[..., 2]), 0.5 * (xyxy[..., 1] + xyxy[..., 3])
        while True:
            idx = int(ember.randint(0, len(self.options), (1,)))
            min_iou = self.options[idx]
            if min_iou >= 1.0:  # the "leave as is" option
                return {}
            for _ in range(self.trials):
                r = self.min_scale + (self.max_scale - self.min_scale) * ember.rand(2)
                new_w, new_h = int(w * r[0]), int(h * r[1])
                if new_h == 0 or not (
                    self.min_aspect_ratio <= new_w / new_h <= self.max_aspect_ratio
                ):
                    continue
                r = ember.rand(2)
                left, top = int((w - new_w) * r[0]), int((h - new_h) * r[1])
                right, bottom = left + new_w, top + new_h
                if left == right or top == bottom:
                    continue
                inside = (left < cx) & (cx < right) & (top < cy) & (cy < bottom)
                if not bool(inside.any()):
                    continue
                crop = ember.tensor([[left, top, right, bottom]], dtype=xyxy.dtype)
                if float(box_iou(xyxy[inside], crop).max()) < min_iou:
                    continue
                return {"top": top, "left": left, "height": new_h, "width": new_w, "inside": inside}

    def _needs_transform(self, params: dict[str, Any]) -> bool:
        return bool(params)

    def _transform(self, inpt, kind, params):
        out = F2.crop(inpt, params["top"], params["left"], params["height"], params["width"])
        if kind == "boxes":
            data = out.as_subclass_of_tensor().clone()
            data[~params["inside"]] = 0  # dropped by SanitizeBoundingBoxes
            out = tv.wrap(data, like=out)
        return out


class SanitizeBoundingBoxes(Transform):
    """Drop degenerate boxes (a side under ``min_size``, an area under ``min_area``, a
    coordinate below 0 or beyond the canvas) together with their labels and masks.

    Args:
        min_size: the smallest width and height kept (>= 1).
        min_area: the smallest area kept (>= 1).
        labels_getter: how to find the labels: by default the ``"labels"`` entry of the
            target dict (``(image, target)`` or a dict sample); a callable of the sample
            returning a tensor or a tuple of tensors; ``None`` for no labels.
    """

    def __init__(
        self,
        min_size: float = 1.0,
        min_area: float = 1.0,
        labels_getter: Callable[[Any], Any] | str | None = "default",
    ) -> None:
        if min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {min_size}.")
        if min_area < 1:
            raise ValueError(f"min_area must be >= 1, got {min_area}.")
        self.min_size, self.min_area, self.labels_getter = min_size, min_area, labels_getter
        self._labels_getter = find_labels if labels_getter == "default" else labels_getter

    def __call__(self, *inputs):
        sample = inputs if len(inputs) > 1 else inputs[0]
        labels = None if self._labels_getter is None else self._labels_getter(sample)
        if isinstance(labels, Tensor):
            labels = (labels,)
        elif labels is not None and not (
            isinstance(labels, (tuple, list)) and all(isinstance(t, Tensor) for t in labels)
        ):
            raise ValueError(
                "The labels in the input to forward() must be a tensor or None, got "
                f"{type(labels)} instead."
            )
        leaves: list = []
        rebuild = _flatten(sample, leaves)
        kinds = _kinds(leaves)
        boxes = [x for x, k in zip(leaves, kinds) if k == "boxes"]
        if len(boxes) != 1:
            raise ValueError(f"Found {len(boxes)} BoundingBoxes in the sample; expected one.")
        box = boxes[0]
        for label in labels or ():
            if label.shape[0] != box.shape[0]:
                raise ValueError(
                    f"Number of boxes (shape={tuple(box.shape)}) and must match the number of "
                    f"labels. Found labels with shape={tuple(label.shape)})."
                )
        valid = self._valid(box)
        out = []
        for x, k in zip(leaves, kinds):
            if labels is not None and any(x is t for t in labels):
                out.append(x[valid])
            elif k in ("boxes", "mask") and x.shape[0] == valid.shape[0]:
                out.append(tv.wrap(x.as_subclass_of_tensor()[valid], like=x))
            else:
                out.append(x)
        return rebuild(iter(out))

    def _valid(self, box: tv.BoundingBoxes) -> Tensor:
        b = F2.convert_bounding_box_format(box, new_format="XYXY").as_subclass_of_tensor()
        ws, hs = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
        valid = (ws >= self.min_size) & (hs >= self.min_size) & (b >= 0).all(dim=-1)
        valid &= ws * hs >= self.min_area
        image_h, image_w = box.canvas_size
        valid &= (b[:, 0] <= image_w) & (b[:, 2] <= image_w)
        return valid & (b[:, 1] <= image_h) & (b[:, 3] <= image_h)
