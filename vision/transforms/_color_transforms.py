"""Colour and erasing transforms of ``ember.vision.transforms`` (v1), re-exported by
``transforms.py``, whose name they keep as ``__module__`` (torchvision's pickled path).

``ColorJitter, Grayscale, RandomGrayscale, GaussianBlur, RandomErasing`` and the
``Random{Invert,Autocontrast,Equalize,Posterize,Solarize,AdjustSharpness}`` family.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable

import ember
from ember.tensor import Tensor

from . import functional as F
from .functional import _pair
from .transforms import _aspect_ratio, _rand, _randint, _randperm, _Transform, _uniform


def _range(
    value, name: str, center: float = 1.0, bound=(0, float("inf")), clip_first_on_zero: bool = True
):
    if isinstance(value, numbers.Number):
        if value < 0:
            raise ValueError(f"If {name} is a single number, it must be non negative.")
        value = [center - float(value), center + float(value)]
        if clip_first_on_zero:
            value[0] = max(value[0], 0.0)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        value = [float(value[0]), float(value[1])]
    else:
        raise TypeError(f"{name} should be a single number or a list/tuple with length 2.")
    if not bound[0] <= value[0] <= value[1] <= bound[1]:
        raise ValueError(f"{name} values should be between {bound}, but got {value}.")
    return None if value[0] == value[1] == center else value


class ColorJitter(_Transform):
    """Randomly change the brightness, contrast, saturation and hue of an image.

    Each factor is drawn uniformly from its range and the four adjustments run in a random
    order; a range equal to the identity is skipped.

    Args:
        brightness: a number ``b`` for the range ``[max(0, 1 - b), 1 + b]``, or ``(min, max)``.
        contrast: as ``brightness``.
        saturation: as ``brightness``.
        hue: a number ``h`` in ``[0, 0.5]`` for ``[-h, h]``, or ``(min, max)`` within
            ``[-0.5, 0.5]``.
    """

    def __init__(self, brightness=0, contrast=0, saturation=0, hue=0) -> None:
        self.brightness = _range(brightness, "brightness")
        self.contrast = _range(contrast, "contrast")
        self.saturation = _range(saturation, "saturation")
        self.hue = _range(hue, "hue", center=0, bound=(-0.5, 0.5), clip_first_on_zero=False)

    @staticmethod
    def get_params(brightness, contrast, saturation, hue):
        order = _randperm(4)
        factors = [
            None if r is None else _uniform(r[0], r[1])
            for r in (brightness, contrast, saturation, hue)
        ]
        return (order, *factors)

    def __call__(self, img):
        order, b, c, s, h = self.get_params(
            self.brightness, self.contrast, self.saturation, self.hue
        )
        ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
        factors = (b, c, s, h)
        for i in order:
            if factors[i] is not None:
                img = ops[i](img, factors[i])
        return img


class Grayscale(_Transform):
    """Convert an image to grayscale.

    Args:
        num_output_channels: 1, or 3 to repeat the gray channel as RGB.
    """

    def __init__(self, num_output_channels: int = 1) -> None:
        self.num_output_channels = num_output_channels

    def __call__(self, img):
        return F.rgb_to_grayscale(img, self.num_output_channels)


class RandomGrayscale(_Transform):
    """Convert an image to grayscale with probability ``p``, keeping its number of channels.

    Args:
        p: the probability of the conversion.
    """

    def __init__(self, p: float = 0.1) -> None:
        self.p = p

    def __call__(self, img):
        if _rand() < self.p:
            return F.rgb_to_grayscale(img, F.get_image_num_channels(img))
        return img


class GaussianBlur(_Transform):
    """Blur an image with a Gaussian kernel whose standard deviation is drawn at random.

    Args:
        kernel_size: the kernel's ``(h, w)``, or an int for a square kernel; odd and positive.
        sigma: a positive number for a fixed standard deviation, or the ``(min, max)`` range to
            draw it from uniformly.
    """

    def __init__(self, kernel_size, sigma=(0.1, 2.0)) -> None:
        ks = _pair(kernel_size, "kernel_size")
        if any(k <= 0 or k % 2 == 0 for k in ks):
            raise ValueError("Kernel size value should be an odd and positive number.")
        if isinstance(sigma, numbers.Number):
            if sigma <= 0:
                raise ValueError("If sigma is a single number, it must be positive.")
            sigma = (float(sigma), float(sigma))
        elif not (len(sigma) == 2 and 0.0 < sigma[0] <= sigma[1]):
            raise ValueError("sigma values should be positive and of the form (min, max).")
        self.kernel_size, self.sigma = ks, sigma

    @staticmethod
    def get_params(sigma_min: float, sigma_max: float) -> float:
        return _uniform(sigma_min, sigma_max)

    def __call__(self, img):
        s = self.get_params(self.sigma[0], self.sigma[1])
        return F.gaussian_blur(img, self.kernel_size, [s, s])


class RandomErasing(_Transform):
    """Erase a random box of a tensor image (Zhong et al.), torchvision's parameters."""

    def __init__(
        self, p: float = 0.5, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0, inplace: bool = False
    ) -> None:
        if not isinstance(value, (numbers.Number, str, tuple, list)):
            raise TypeError("Argument value should be either a number or str or a sequence")
        if isinstance(value, str) and value != "random":
            raise ValueError("If value is str, it should be 'random'")
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            warnings.warn("Scale and ratio should be of kind (min, max)", stacklevel=2)
        if scale[0] < 0 or scale[1] > 1:
            raise ValueError("Scale should be between 0 and 1")
        if p < 0 or p > 1:
            raise ValueError("Random erasing probability should be between 0 and 1")
        self.p, self.scale, self.ratio, self.value, self.inplace = p, scale, ratio, value, inplace

    @staticmethod
    def get_params(img: Tensor, scale, ratio, value=None):
        c, h, w = F.get_dimensions(img)
        area = h * w
        for _ in range(10):
            erase_area = area * _uniform(scale[0], scale[1])
            aspect = _aspect_ratio(ratio)
            eh = int(round(math.sqrt(erase_area * aspect)))
            ew = int(round(math.sqrt(erase_area / aspect)))
            if not (eh < h and ew < w):
                continue
            if value is None:
                v = ember.randn(c, eh, ew, dtype=img.dtype)
            else:
                v = ember.tensor(list(value), dtype=img.dtype).reshape(-1, 1, 1)
            return _randint(0, h - eh + 1), _randint(0, w - ew + 1), eh, ew, v
        return 0, 0, h, w, img

    def __call__(self, img: Tensor) -> Tensor:
        if _rand() >= self.p:
            return img
        value = self.value
        if isinstance(value, numbers.Number):
            value = [float(value)]
        elif isinstance(value, str):
            value = None
        elif isinstance(value, (tuple, list)):
            value = [float(v) for v in value]
        c = F.get_image_num_channels(img)
        if value is not None and len(value) not in (1, c):
            raise ValueError(
                f"If value is a sequence, it should have either a single value or "
                f"{c} (number of input channels)"
            )
        x, y, h, w, v = self.get_params(img, self.scale, self.ratio, value)
        return F.erase(img, x, y, h, w, v, self.inplace)


class _RandomOp(_Transform):
    _op: Callable

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def _apply(self, img):
        return type(self)._op(img)

    def __call__(self, img):
        return self._apply(img) if _rand() < self.p else img


class RandomInvert(_RandomOp):
    """Invert the colours of an image with probability ``p``.

    Args:
        p: the probability of inverting.
    """

    _op = staticmethod(F.invert)


class RandomAutocontrast(_RandomOp):
    """Stretch the contrast of each channel to the full range with probability ``p``.

    Args:
        p: the probability of the adjustment.
    """

    _op = staticmethod(F.autocontrast)


class RandomEqualize(_RandomOp):
    """Equalize the histogram of an image with probability ``p`` (uint8 tensors or PIL images).

    Args:
        p: the probability of the adjustment.
    """

    _op = staticmethod(F.equalize)


class RandomPosterize(_RandomOp):
    """Keep only the ``bits`` highest bits of each channel with probability ``p``.

    Tensor inputs must be uint8.

    Args:
        bits: how many bits to keep, 0 to 8.
        p: the probability of the adjustment.
    """

    def __init__(self, bits: int, p: float = 0.5) -> None:
        super().__init__(p)
        self.bits = bits

    def _apply(self, img):
        return F.posterize(img, self.bits)


class RandomSolarize(_RandomOp):
    """Invert the pixels at or above ``threshold`` with probability ``p``.

    Args:
        threshold: the value from which pixels are inverted.
        p: the probability of the adjustment.
    """

    def __init__(self, threshold: float, p: float = 0.5) -> None:
        super().__init__(p)
        self.threshold = threshold

    def _apply(self, img):
        return F.solarize(img, self.threshold)


class RandomAdjustSharpness(_RandomOp):
    """Change the sharpness of an image with probability ``p``.

    Args:
        sharpness_factor: 0 gives a smoothed image, 1 the original, 2 twice the sharpness.
        p: the probability of the adjustment.
    """

    def __init__(self, sharpness_factor: float, p: float = 0.5) -> None:
        super().__init__(p)
        self.sharpness_factor = sharpness_factor

    def _apply(self, img):
        return F.adjust_sharpness(img, self.sharpness_factor)


# torchvision's path: printed and pickled instances name the public module, not this file
for _cls in (
    ColorJitter,
    Grayscale,
    RandomGrayscale,
    GaussianBlur,
    RandomErasing,
    RandomInvert,
    RandomAutocontrast,
    RandomEqualize,
    RandomPosterize,
    RandomSolarize,
    RandomAdjustSharpness,
):
    _cls.__module__ = "ember.vision.transforms.transforms"
del _cls
