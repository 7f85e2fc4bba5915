"""``GeneralizedRCNNTransform``: the detectors' input and output adapter -- normalize, resize
each image (and its boxes and masks) so its short side is ``min_size`` (long side at most
``max_size``), pad the batch to a multiple of ``size_divisible``, and map the detections back
to the original image sizes (torchvision.models.detection.transform)."""

from __future__ import annotations

import math
from typing import Any

import ember
from ember import Tensor, nn
from ember.nn import functional as F

from .image_list import ImageList
from .roi_heads import paste_masks_in_image

__all__ = ["GeneralizedRCNNTransform", "resize_boxes", "resize_keypoints"]


def _resized_size(h: int, w: int, min_size: float, max_size: float) -> tuple[int, int]:
    # torchvision's rule: one scale for both sides; interpolate(scale_factor=s,
    # recompute_scale_factor=True) gives floor(side * s)
    scale = min(min_size / min(h, w), max_size / max(h, w))
    return int(math.floor(h * scale)), int(math.floor(w * scale))


def _resize_image_and_masks(
    image: Tensor, min_size: float, max_size: float, target: dict[str, Any] | None,
    fixed_size: tuple[int, int] | None = None,
) -> tuple[Tensor, dict[str, Any] | None]:  # fmt: skip
    h, w = image.shape[-2:]
    size = (fixed_size[1], fixed_size[0]) if fixed_size else _resized_size(h, w, min_size, max_size)
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    if target is not None and "masks" in target:
        masks = target["masks"]
        masks = F.interpolate(masks[:, None].float(), size=size)[:, 0].to(ember.uint8)
        target["masks"] = masks
    return image, target


def resize_boxes(boxes: Tensor, original_size, new_size) -> Tensor:
    """Scale ``(x1, y1, x2, y2)`` boxes from an image of ``original_size`` ``(h, w)`` to one
    of ``new_size``."""
    ratio_h = float(new_size[0]) / float(original_size[0])
    ratio_w = float(new_size[1]) / float(original_size[1])
    scale = ember.tensor(
        [ratio_w, ratio_h, ratio_w, ratio_h], dtype=boxes.dtype, device=boxes.device
    )
    return boxes * scale


def resize_keypoints(keypoints: Tensor, original_size, new_size) -> Tensor:
    """Scale the ``x, y`` of ``(..., K, 3)`` keypoints from ``original_size`` ``(h, w)`` to
    ``new_size`` (visibility unchanged)."""
    ratio_h = float(new_size[0]) / float(original_size[0])
    ratio_w = float(new_size[1]) / float(original_size[1])
    scale = ember.tensor([ratio_w, ratio_h, 1.0], dtype=keypoints.dtype, device=keypoints.device)
    return keypoints * scale[: keypoints.shape[-1]]


class GeneralizedRCNNTransform(nn.Module):
    """Normalize with ``image_mean``/``image_std``, resize (training: a random choice of
    ``min_size`` when it is a tuple; eval: its last entry) and batch a list of ``(C, H, W)``
    float images into an ``ImageList``, transforming the targets' boxes and masks alike."""

    def __init__(
        self,
        min_size: int | tuple[int, ...],
        max_size: int,
        image_mean: list[float],
        image_std: list[float],
        size_divisible: int = 32,
        fixed_size: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(min_size, (list, tuple)):
            min_size = (min_size,)
        self.min_size = min_size
        self.max_size = max_size
        self.image_mean = image_mean
        self.image_std = image_std
        self.size_divisible = size_divisible
        self.fixed_size = fixed_size
        self._skip_resize = kwargs.pop("_skip_resize", False)
        if kwargs:
            raise TypeError(f"GeneralizedRCNNTransform got unexpected arguments {sorted(kwargs)}")

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None]:
        images = list(images)
        if targets is not None:
            targets = [dict(t) for t in targets]  # never modify the caller's dicts
        for i, image in enumerate(images):
            if image.dim() != 3:
                raise ValueError(
                    f"images is expected to be a list of 3d tensors of shape [C, H, W], got "
                    f"{tuple(image.shape)}"
                )
            target = targets[i] if targets is not None else None
            image = self.normalize(image)
            image, target = self.resize(image, target)
            images[i] = image
            if targets is not None:
                targets[i] = target
        image_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batched = self.batch_images(images, size_divisible=self.size_divisible)
        return ImageList(batched, image_sizes), targets

    def normalize(self, image: Tensor) -> Tensor:
        if not image.is_floating_point():
            raise TypeError(
                "Expected input images to be of floating type (in range [0, 1]), but found "
                f"type {image.dtype} instead"
            )
        mean = ember.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = ember.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def torch_choice(self, k: tuple[int, ...]) -> int:
        return k[int(ember.empty(1).uniform_(0.0, float(len(k))).item())]

    def resize(self, image: Tensor, target: dict[str, Any] | None = None):
        h, w = image.shape[-2:]
        if self.training:
            if self._skip_resize:
                return image, target
            size = self.torch_choice(self.min_size)
        else:
            size = self.min_size[-1]
        image, target = _resize_image_and_masks(image, size, self.max_size, target, self.fixed_size)
        if target is None:
            return image, target
        target["boxes"] = resize_boxes(target["boxes"], (h, w), image.shape[-2:])
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], (h, w), image.shape[-2:])
        return image, target

    def batch_images(self, images: list[Tensor], size_divisible: int = 32) -> Tensor:
        """Zero-pad every image at the bottom/right to the batch's largest height and width,
        each rounded up to a multiple of ``size_divisible``, and stack them."""
        max_h = max(int(img.shape[-2]) for img in images)
        max_w = max(int(img.shape[-1]) for img in images)
        max_h = int(math.ceil(max_h / size_divisible) * size_divisible)
        max_w = int(math.ceil(max_w / size_divisible) * size_divisible)
        padded = [
            F.pad(img, (0, max_w - img.shape[-1], 0, max_h - img.shape[-2])) for img in images
        ]
        return ember.stack(padded, dim=0)

    def postprocess(
        self,
        result: list[dict[str, Tensor]],
        image_shapes: list[tuple[int, int]],
        original_image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        """Boxes back to each original image's size; masks pasted into full-size images."""
        if self.training:
            return result
        for pred, im_s, o_im_s in zip(result, image_shapes, original_image_sizes):
            boxes = resize_boxes(pred["boxes"], im_s, o_im_s)
            pred["boxes"] = boxes
            if "masks" in pred:
                pred["masks"] = paste_masks_in_image(pred["masks"], boxes, o_im_s)
            if "keypoints" in pred:
                pred["keypoints"] = resize_keypoints(pred["keypoints"], im_s, o_im_s)
        return result

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(\n    Normalize(mean={self.image_mean}, "
            f"std={self.image_std})\n    Resize(min_size={self.min_size}, "
            f"max_size={self.max_size}, mode='bilinear')\n)"
        )
