"""Random and multi-crop geometry transforms of ``ember.vision.transforms`` (v1), re-exported
by ``transforms.py``, where they keep their ``__module__`` (pickles made before the split load).

``RandomCrop, RandomHorizontalFlip, RandomVerticalFlip, RandomResizedCrop, FiveCrop, TenCrop,
RandomRotation, RandomAffine`` and the parameter helpers ``_resized_crop_params``, ``_degrees``.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

from ember.tensor import Tensor

from . import functional as F
from .functional import InterpolationMode, _pair
from .transforms import _aspect_ratio, _rand, _randint, _Transform, _uniform


class RandomCrop(_Transform):
    """Crop an image at a random position.

    Args:
        size: ``(h, w)`` of the crop, or an int for a square crop.
        padding: optional padding applied before cropping, in the formats that
            :class:`~ember.vision.transforms.Pad` takes.
        pad_if_needed: pad an image smaller than ``size`` up to it instead of failing.
        fill: the value of padded pixels in ``"constant"`` mode.
        padding_mode: the padding mode, as in :class:`~ember.vision.transforms.Pad`.
    """

    def __init__(
        self,
        size,
        padding=None,
        pad_if_needed: bool = False,
        fill=0,
        padding_mode: str = "constant",
    ) -> None:
        self.size = _pair(size)
        self.padding, self.pad_if_needed = padding, pad_if_needed
        self.fill, self.padding_mode = fill, padding_mode

    @staticmethod
    def get_params(img, output_size) -> tuple[int, int, int, int]:
        _, h, w = F.get_dimensions(img)
        th, tw = output_size
        if h < th or w < tw:
            raise ValueError(
                f"Required crop size {(th, tw)} is larger than input image size {(h, w)}"
            )
        if w == tw and h == th:
            return 0, 0, h, w
        return _randint(0, h - th + 1), _randint(0, w - tw + 1), th, tw

    def __call__(self, img):
        if self.padding is not None:
            img = F.pad(img, self.padding, self.fill, self.padding_mode)
        _, h, w = F.get_dimensions(img)
        if self.pad_if_needed and w < self.size[1]:
            img = F.pad(img, [self.size[1] - w, 0], self.fill, self.padding_mode)
        if self.pad_if_needed and h < self.size[0]:
            img = F.pad(img, [0, self.size[0] - h], self.fill, self.padding_mode)
        return F.crop(img, *self.get_params(img, self.size))


class RandomHorizontalFlip(_Transform):
    """Flip an image left to right with probability ``p``.

    Args:
        p: the probability of flipping.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img):
        return F.hflip(img) if _rand() < self.p else img


class RandomVerticalFlip(_Transform):
    """Flip an image upside down with probability ``p``.

    Args:
        p: the probability of flipping.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img):
        return F.vflip(img) if _rand() < self.p else img


def _resized_crop_params(height: int, width: int, scale, ratio) -> tuple[int, int, int, int]:
    area = height * width
    for _ in range(10):
        target_area = area * _uniform(scale[0], scale[1])
        aspect = _aspect_ratio(ratio)
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return _randint(0, height - h + 1), _randint(0, width - w + 1), h, w
    # Fallback: a central crop at the nearest allowed ratio.
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


class RandomResizedCrop(_Transform):
    """Crop a random region of an image and resize it to ``size``.

    The region covers a random fraction of the image area (within ``scale``) at a random aspect
    ratio (within ``ratio``, drawn log-uniformly); after ten failed draws the crop falls back
    to a central one.

    Args:
        size: the output ``(h, w)``, or an int for a square output.
        scale: the ``(min, max)`` fraction of the area to crop.
        ratio: the ``(min, max)`` width / height ratio of the crop.
        interpolation: an :class:`~ember.vision.transforms.InterpolationMode`, bilinear by
            default.
        antialias: low-pass filter tensors before downsampling.
    """

    def __init__(
        self,
        size,
        scale=(0.08, 1.0),
        ratio=(3.0 / 4.0, 4.0 / 3.0),
        interpolation=InterpolationMode.BILINEAR,
        antialias: bool | None = True,
    ):
        self.size = _pair(size)
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            warnings.warn("Scale and ratio should be of kind (min, max)", stacklevel=2)
        self.scale, self.ratio = scale, ratio
        self.interpolation, self.antialias = interpolation, antialias

    @staticmethod
    def get_params(img, scale, ratio) -> tuple[int, int, int, int]:
        _, height, width = F.get_dimensions(img)
        return _resized_crop_params(height, width, scale, ratio)

    def __call__(self, img):
        i, j, h, w = self.get_params(img, self.scale, self.ratio)
        return F.resized_crop(
            img, i, j, h, w, self.size, self.interpolation, antialias=self.antialias
        )


class FiveCrop(_Transform):
    """Crop the four corners and the centre of an image.

    Returns a tuple of five images: top-left, top-right, bottom-left, bottom-right, centre.

    Args:
        size: ``(h, w)`` of each crop, or an int for square crops.
    """

    def __init__(self, size) -> None:
        self.size = _pair(size)

    def __call__(self, img):
        return F.five_crop(img, self.size)


class TenCrop(_Transform):
    """Crop the corners and centre of an image, then those of its flipped copy.

    The first five crops are those of :class:`~ember.vision.transforms.FiveCrop`; the last five
    come from the flipped image in the same order.

    Returns a tuple of ten images.

    Args:
        size: ``(h, w)`` of each crop, or an int for square crops.
        vertical_flip: flip upside down instead of left to right.
    """

    def __init__(self, size, vertical_flip: bool = False) -> None:
        self.size, self.vertical_flip = _pair(size), vertical_flip

    def __call__(self, img):
        return F.ten_crop(img, self.size, self.vertical_flip)


def _degrees(degrees, name: str) -> list[float]:
    if isinstance(degrees, numbers.Number):
        if degrees < 0:
            raise ValueError(f"If {name} is a single number, it must be positive.")
        return [-float(degrees), float(degrees)]
    if not isinstance(degrees, Sequence) or len(degrees) != 2:
        raise ValueError(f"If {name} is a sequence, it must be of len 2.")
    return [float(d) for d in degrees]


class RandomRotation(_Transform):
    """Rotate an image by a random angle.

    Args:
        degrees: the ``(min, max)`` range of angles in degrees, counter-clockwise; a number
            ``d`` means ``(-d, d)``.
        interpolation: an :class:`~ember.vision.transforms.InterpolationMode`, nearest by
            default.
        expand: enlarge the output so that the whole rotated image fits in it.
        center: the ``(x, y)`` centre of rotation; the image centre when ``None``.
        fill: the value of pixels outside the rotated image.
    """

    def __init__(
        self,
        degrees,
        interpolation=InterpolationMode.NEAREST,
        expand: bool = False,
        center=None,
        fill=0,
    ) -> None:
        self.degrees = _degrees(degrees, "degrees")
        self.interpolation, self.expand, self.center, self.fill = (
            interpolation,
            expand,
            center,
            fill,
        )

    @staticmethod
    def get_params(degrees: list[float]) -> float:
        return _uniform(degrees[0], degrees[1])

    def __call__(self, img):
        fill = self.fill
        if isinstance(img, Tensor) and isinstance(fill, (int, float)):
            fill = [float(fill)] * F.get_image_num_channels(img)
        return F.rotate(
            img, self.get_params(self.degrees), self.interpolation, self.expand, self.center, fill
        )


class RandomAffine(_Transform):
    """Apply a random affine transform (rotation, translation, scale, shear) to an image.

    Args:
        degrees: the ``(min, max)`` rotation range in degrees; a number ``d`` means ``(-d, d)``.
        translate: optional ``(a, b)`` fractions of the width and height bounding the random
            horizontal and vertical shifts.
        scale: optional ``(min, max)`` range of the scale factor.
        shear: optional shear in degrees: a number ``s`` (x shear in ``(-s, s)``), a
            ``(min, max)`` x range, or four values giving x and y ranges.
        interpolation: an :class:`~ember.vision.transforms.InterpolationMode`, nearest by
            default.
        fill: the value of pixels outside the transformed image.
        center: the ``(x, y)`` centre of the transform; the image centre when ``None``.
    """

    def __init__(
        self,
        degrees,
        translate=None,
        scale=None,
        shear=None,
        interpolation=InterpolationMode.NEAREST,
        fill=0,
        center=None,
    ) -> None:
        self.degrees = _degrees(degrees, "degrees")
        if translate is not None and not all(0.0 <= t <= 1.0 for t in translate):
            raise ValueError("translation values should be between 0 and 1")
        if scale is not None and any(s <= 0 for s in scale):
            raise ValueError("scale values should be positive")
        if shear is not None:
            shear = (
                _degrees(shear, "shear")
                if isinstance(shear, numbers.Number) or len(shear) == 2
                else [float(s) for s in shear]
            )
            if len(shear) not in (2, 4):
                raise ValueError("shear should be a number or a sequence of 2 or 4 values")
        self.translate, self.scale, self.shear = translate, scale, shear
        self.interpolation, self.fill, self.center = interpolation, fill, center

    @staticmethod
    def get_params(degrees, translate, scale_ranges, shears, img_size):
        angle = _uniform(degrees[0], degrees[1])
        if translate is not None:
            max_dx, max_dy = float(translate[0] * img_size[0]), float(translate[1] * img_size[1])
            tx, ty = int(round(_uniform(-max_dx, max_dx))), int(round(_uniform(-max_dy, max_dy)))
        else:
            tx, ty = 0, 0
        scale = 1.0 if scale_ranges is None else _uniform(scale_ranges[0], scale_ranges[1])
        sx = sy = 0.0
        if shears is not None:
            sx = _uniform(shears[0], shears[1])
            if len(shears) == 4:
                sy = _uniform(shears[2], shears[3])
        return angle, (tx, ty), scale, (sx, sy)

    def __call__(self, img):
        fill = self.fill
        if isinstance(img, Tensor) and isinstance(fill, (int, float)):
            fill = [float(fill)] * F.get_image_num_channels(img)
        angle, translate, scale, shear = self.get_params(
            self.degrees, self.translate, self.scale, self.shear, F.get_image_size(img)
        )
        return F.affine(img, angle, translate, scale, shear, self.interpolation, fill, self.center)


# Pickled by reference and repr'd as ``ember.vision.transforms.transforms``'s, as before the
# split (torchvision's classes say ``torchvision.transforms.transforms`` too).
for _cls in (
    RandomCrop,
    RandomHorizontalFlip,
    RandomVerticalFlip,
    RandomResizedCrop,
    FiveCrop,
    TenCrop,
    RandomRotation,
    RandomAffine,
):
    _cls.__module__ = "ember.vision.transforms.transforms"
del _cls
