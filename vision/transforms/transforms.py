"""torchvision's v1 transform classes on ember (``ember.vision.transforms``).

Random choices draw from ember's default generator (``ember.manual_seed`` makes them
reproducible; DataLoader workers seed it per worker). ember's generator is not torch's, so the
same seed gives other draws than torchvision: each random class has torchvision's static
``get_params`` and applies the same functional op, which is what the parity tests compare.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence

from ember import random as _random
from ember.tensor import Tensor
from ember.utils.data.transforms import Compose  # the same as torchvision's

from . import functional as F
from .functional import InterpolationMode, _pair

__all__ = [
    "Compose",
    "ToTensor",
    "PILToTensor",
    "ToPILImage",
    "ConvertImageDtype",
    "Normalize",
    "Resize",
    "CenterCrop",
    "Pad",
    "Lambda",
    "RandomApply",
    "RandomChoice",
    "RandomOrder",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomVerticalFlip",
    "RandomResizedCrop",
    "FiveCrop",
    "TenCrop",
    "ColorJitter",
    "RandomRotation",
    "RandomAffine",
    "Grayscale",
    "RandomGrayscale",
    "GaussianBlur",
    "RandomErasing",
    "RandomInvert",
    "RandomPosterize",
    "RandomSolarize",
    "RandomAdjustSharpness",
    "RandomAutocontrast",
    "RandomEqualize",
    "InterpolationMode",
]


def _rng():
    # Looked up per call: ember.manual_seed replaces the default generator's stream.
    return _random.default_generator.numpy()


def _rand() -> float:
    return float(_rng().random())


def _randint(low: int, high: int) -> int:
    return int(_rng().integers(low, high))


def _uniform(lo: float, hi: float) -> float:
    return float(_rng().uniform(lo, hi))


class _Transform:
    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{self.__class__.__name__}({args})"


class ToTensor(_Transform):
    """PIL image or ndarray ``(H, W, C)`` -> float tensor ``(C, H, W)`` in [0, 1]."""

    def __call__(self, pic) -> Tensor:
        return F.to_tensor(pic)


class PILToTensor(_Transform):
    """PIL image -> tensor ``(C, H, W)`` of the same dtype (no scaling)."""

    def __call__(self, pic) -> Tensor:
        return F.pil_to_tensor(pic)


class ToPILImage(_Transform):
    """Convert a tensor ``(C, H, W)`` or an ndarray ``(H, W, C)`` to a PIL image.

    Float tensors are multiplied by 255 and truncated to uint8 unless ``mode`` is ``"F"``.

    Args:
        mode: the PIL mode of the result; ``None`` picks one from the channel count
            (``L``, ``LA``, ``RGB`` or ``RGBA``) and the dtype.
    """

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode

    def __call__(self, pic):
        return F.to_pil_image(pic, self.mode)


class ConvertImageDtype(_Transform):
    """Convert a tensor image to ``dtype``, rescaling its values to the new dtype's range.

    Integer images span ``[0, max]`` of their type and float images ``[0, 1]``, so uint8 255
    becomes 1.0 and back.

    Args:
        dtype: the ember dtype of the result, for example ``ember.float32``.
    """

    def __init__(self, dtype) -> None:
        self.dtype = dtype

    def __call__(self, image: Tensor) -> Tensor:
        return F.convert_image_dtype(image, self.dtype)


class Normalize(_Transform):
    """Normalize a float tensor image channel by channel: ``(x - mean[c]) / std[c]``.

    Args:
        mean: one mean per channel.
        std: one standard deviation per channel (none may be zero).
        inplace: write the result into the input tensor instead of a new one.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor: Tensor) -> Tensor:
        return F.normalize(tensor, self.mean, self.std, self.inplace)


class Resize(_Transform):
    """Resize a PIL image or a tensor image ``(..., H, W)``.

    Args:
        size: ``(h, w)`` for an exact output size, or an int (or a one-element sequence) for
            the length of the shorter edge, the longer one following the aspect ratio.
        interpolation: an :class:`~ember.vision.transforms.InterpolationMode`, bilinear by
            default.
        max_size: with an int ``size``, the longest the longer edge may become; the image is
            shrunk further when it would exceed it.
        antialias: low-pass filter tensors before downsampling.
    """

    def __init__(
        self,
        size,
        interpolation=InterpolationMode.BILINEAR,
        max_size=None,
        antialias: bool | None = True,
    ) -> None:
        if not isinstance(size, (int, Sequence)) or (
            isinstance(size, Sequence) and len(size) not in (1, 2)
        ):
            raise TypeError(f"Size should be int or sequence of length 1 or 2. Got {size!r}")
        F._mode(interpolation)
        self.size, self.interpolation = size, interpolation
        self.max_size, self.antialias = max_size, antialias

    def __call__(self, img):
        return F.resize(img, self.size, self.interpolation, self.max_size, self.antialias)


class CenterCrop(_Transform):
    """Crop the centre of an image to ``size``.

    Args:
        size: ``(h, w)``, or an int for a square crop. An image smaller than ``size`` is padded
            with zeros.
    """

    def __init__(self, size) -> None:
        self.size = _pair(size)

    def __call__(self, img):
        return F.center_crop(img, self.size)


class Pad(_Transform):
    """Pad the borders of an image.

    Args:
        padding: an int for all four borders, ``(left/right, top/bottom)``, or
            ``(left, top, right, bottom)``.
        fill: the value of new pixels in ``"constant"`` mode.
        padding_mode: ``"constant"``, ``"edge"`` (repeat the last pixel), ``"reflect"``
            (mirror without repeating the edge) or ``"symmetric"`` (mirror including it).
    """

    def __init__(self, padding, fill=0, padding_mode: str = "constant") -> None:
        F._padding4(padding)
        if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
            raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
        self.padding, self.fill, self.padding_mode = padding, fill, padding_mode

    def __call__(self, img):
        return F.pad(img, self.padding, self.fill, self.padding_mode)


class Lambda(_Transform):
    """Wrap a user function as a transform.

    Args:
        lambd: a callable applied to the input; its result is returned as is.
    """

    def __init__(self, lambd: Callable) -> None:
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__!r}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)


class RandomApply(Compose):
    """Apply the list of transforms with probability ``p``."""

    def __init__(self, transforms: Sequence[Callable], p: float = 0.5) -> None:
        super().__init__(transforms)
        self.p = p

    def __call__(self, img):
        return img if self.p < _rand() else super().__call__(img)


class RandomChoice(Compose):
    """Apply one transform picked at random from a list.

    Args:
        transforms: the candidate transforms.
        p: optional weights, one per transform (normalized to sum to one); uniform when
            ``None``.
    """

    def __init__(self, transforms: Sequence[Callable], p: Sequence[float] | None = None):
        super().__init__(transforms)
        if p is not None and len(p) != len(self.transforms):
            raise ValueError(
                f"Length of p doesn't match the number of transforms: {len(p)} != "
                f"{len(self.transforms)}"
            )
        self.p = p

    def __call__(self, img):
        idx = int(
            _rng().choice(
                len(self.transforms),
                p=None if self.p is None else [w / sum(self.p) for w in self.p],
            )
        )
        return self.transforms[idx](img)


class RandomOrder(Compose):
    """Apply every transform of a list, in an order shuffled anew on each call.

    Args:
        transforms: the transforms to apply.
    """

    def __call__(self, img):
        for i in _rng().permutation(len(self.transforms)):
            img = self.transforms[int(i)](img)
        return img


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
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * _uniform(scale[0], scale[1])
        aspect = math.exp(_uniform(log_ratio[0], log_ratio[1]))
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


# The colour and erasing classes live in their own file (imported last: they build on the
# helpers above).
from ._color_transforms import (  # noqa: E402
    ColorJitter,
    GaussianBlur,
    Grayscale,
    RandomAdjustSharpness,
    RandomAutocontrast,
    RandomEqualize,
    RandomErasing,
    RandomGrayscale,
    RandomInvert,
    RandomPosterize,
    RandomSolarize,
)
