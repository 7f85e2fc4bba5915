"""Colour ops and blur of ``transforms.functional`` (re-exported there, whose name they keep as
``__module__``; same dispatch: PIL images to Pillow, tensors to the array kernels)."""

from __future__ import annotations

import numbers

from ember.tensor import Tensor

from . import _functional_pil as F_pil
from . import _functional_tensor as F_t
from .functional import _arr, _check, _wrap, pil_to_tensor, to_pil_image


# ---- colour -----------------------------------------------------------------------------------
def _color(name: str, img, *args, check_factor: bool = True):
    if check_factor and args and args[0] < 0:
        raise ValueError(f"{name.replace('adjust_', '')}_factor ({args[0]}) is not non-negative.")
    if not _check(img):
        return getattr(F_pil, name)(img, *args)
    a = _arr(img)
    if name in (
        "adjust_brightness",
        "adjust_contrast",
        "adjust_saturation",
        "adjust_hue",
        "adjust_sharpness",
    ) and a.shape[-3] not in (1, 3):
        raise TypeError(
            f"Input image tensor permitted channel values are [1, 3], but found {a.shape[-3]}"
        )
    out = getattr(F_t, name)(a, *args)
    return _wrap(out if img.dim() > 2 else out[0])


def adjust_brightness(img, brightness_factor: float):
    """Scale the brightness of an image.

    Args:
        img: a PIL image or a tensor image ``(..., C, H, W)``.
        brightness_factor: a non-negative factor; 0 gives a black image, 1 the original.
    """
    return _color("adjust_brightness", img, brightness_factor)


def adjust_contrast(img, contrast_factor: float):
    """Change the contrast of an image by blending it with its mean gray level.

    Args:
        img: a PIL image or a tensor image ``(..., C, H, W)``.
        contrast_factor: a non-negative factor; 0 gives a uniform gray image, 1 the original.
    """
    return _color("adjust_contrast", img, contrast_factor)


def adjust_saturation(img, saturation_factor: float):
    """Change the colour saturation of an image by blending it with its grayscale version.

    Args:
        img: a PIL image or a tensor image ``(..., C, H, W)``.
        saturation_factor: a non-negative factor; 0 gives a grayscale image, 1 the original.
    """
    return _color("adjust_saturation", img, saturation_factor)


def adjust_sharpness(img, sharpness_factor: float):
    """Change the sharpness of an image by blending it with a smoothed copy.

    Args:
        img: a PIL image or a tensor image ``(..., C, H, W)``.
        sharpness_factor: a non-negative factor; 0 gives the smoothed image, 1 the original,
            2 twice the sharpness.
    """
    return _color("adjust_sharpness", img, sharpness_factor)


def adjust_hue(img, hue_factor: float):
    """Shift the hue of an image.

    The image goes to HSV, its hue channel is rotated by ``hue_factor`` (a fraction of a full
    turn) and the result goes back to RGB; one-channel images are returned unchanged.

    Args:
        img: a PIL image or a tensor image ``(..., C, H, W)``.
        hue_factor: the shift, in ``[-0.5, 0.5]``.
    """
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor ({hue_factor}) is not in [-0.5, 0.5].")
    return _color("adjust_hue", img, hue_factor, check_factor=False)


def adjust_gamma(img, gamma: float, gain: float = 1.0):
    """Apply a gamma correction: ``gain * x ** gamma`` on values scaled to ``[0, 1]``.

    Args:
        img: a PIL image or a tensor image ``(..., C, H, W)``.
        gamma: a non-negative exponent; below 1 brightens dark regions, above 1 darkens them.
        gain: a multiplier applied after the power.
    """
    if gamma < 0:
        raise ValueError("Gamma should be a non-negative real number")
    return _color("adjust_gamma", img, gamma, gain)


def rgb_to_grayscale(img, num_output_channels: int = 1):
    """Convert an RGB image to grayscale (ITU-R 601-2 luma weights).

    Args:
        img: a PIL image or a tensor image ``(..., C, H, W)`` with 1 or 3 channels.
        num_output_channels: 1, or 3 to repeat the gray channel.
    """
    if num_output_channels not in (1, 3):
        raise ValueError("num_output_channels should be either 1 or 3")
    if not _check(img):
        return F_pil.to_grayscale(img, num_output_channels)
    a = _arr(img)
    if a.shape[-3] not in (1, 3):
        raise TypeError(
            f"Input image tensor permitted channel values are [1, 3], but found {a.shape[-3]}"
        )
    return _wrap(F_t.rgb_to_grayscale(a, num_output_channels))


def to_grayscale(img, num_output_channels: int = 1):
    """Convert an image to grayscale.

    The same as :func:`~ember.vision.transforms.functional.rgb_to_grayscale`.

    Args:
        img: a PIL image or a tensor image.
        num_output_channels: 1, or 3 to repeat the gray channel.
    """
    return rgb_to_grayscale(img, num_output_channels)


def invert(img):
    """Invert the colours of an image: each value ``x`` becomes ``max - x``.

    ``max`` is 1.0 for float images and the dtype's largest value for integer ones.

    Args:
        img: a PIL image or a tensor image ``(..., C, H, W)``.
    """
    return _color("invert", img, check_factor=False)


def posterize(img, bits: int):
    """Reduce each channel to its ``bits`` highest bits.

    Args:
        img: a PIL image or a uint8 tensor image.
        bits: how many bits to keep, 0 to 8.
    """
    if not 0 <= bits <= 8:
        raise ValueError(f"The number if bits should be between 0 and 8. Got {bits}")
    return _color("posterize", img, bits, check_factor=False)


def solarize(img, threshold: float):
    """Invert the pixels whose value is at or above ``threshold``.

    Args:
        img: a PIL image or a tensor image ``(..., C, H, W)``.
        threshold: the value from which pixels are inverted; at most the image's maximum value.
    """
    return _color("solarize", img, threshold, check_factor=False)


def autocontrast(img):
    """Stretch each channel linearly so that its darkest pixel becomes 0 and its brightest the
    maximum value. Channels of a single value are left unchanged.

    Args:
        img: a PIL image or a tensor image ``(..., C, H, W)``.
    """
    return _color("autocontrast", img, check_factor=False)


def equalize(img):
    """Equalize the histogram of each channel of an image.

    Args:
        img: a PIL image or a uint8 tensor image.
    """
    return _color("equalize", img, check_factor=False)


def gaussian_blur(img, kernel_size, sigma=None):
    """Blur with a Gaussian kernel (reflect padding); PIL images go through the tensor path,
    as in torchvision."""
    ks = [kernel_size, kernel_size] if isinstance(kernel_size, int) else list(kernel_size)
    if len(ks) == 1:
        ks = [ks[0], ks[0]]
    if len(ks) != 2 or any(k % 2 == 0 or k <= 0 for k in ks):
        raise ValueError(f"kernel_size should have odd and positive integers. Got {kernel_size}")
    if sigma is None:
        sig = [k * 0.15 + 0.35 for k in ks]
    elif isinstance(sigma, numbers.Number):
        sig = [float(sigma), float(sigma)]
    else:
        sig = [float(s) for s in sigma] * (2 if len(sigma) == 1 else 1)
    if any(s <= 0 for s in sig):
        raise ValueError(f"sigma should have positive values. Got {sigma}")
    if not _check(img):
        out = gaussian_blur(pil_to_tensor(img), ks, sig)
        return to_pil_image(out, mode=img.mode)
    a = _arr(img)
    out = F_t.gaussian_blur(a, ks, sig)
    return _wrap(out if img.dim() > 2 else out[0])


def erase(img: Tensor, i: int, j: int, h: int, w: int, v, inplace: bool = False) -> Tensor:
    """Set the box ``[i:i+h, j:j+w]`` of a tensor image to ``v``."""
    if not isinstance(img, Tensor):
        raise TypeError(f"img should be Tensor Image. Got {type(img)}")
    a = img.detach()._data
    val = v.detach()._data if isinstance(v, Tensor) else v
    out = F_t.erase(a, i, j, h, w, val, inplace)
    return img if inplace else _wrap(out)


# torchvision's path: the functions report (and pickle as) the public module, not this file
for _fn in (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    adjust_sharpness,
    adjust_hue,
    adjust_gamma,
    rgb_to_grayscale,
    to_grayscale,
    invert,
    posterize,
    solarize,
    autocontrast,
    equalize,
    gaussian_blur,
    erase,
):
    _fn.__module__ = "ember.vision.transforms.functional"
del _fn
