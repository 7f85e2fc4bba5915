"""Colour ops and blur of ``transforms.functional`` (re-exported there; same dispatch: PIL
images to Pillow, tensors to the array kernels)."""

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
    return _color("adjust_brightness", img, brightness_factor)


def adjust_contrast(img, contrast_factor: float):
    return _color("adjust_contrast", img, contrast_factor)


def adjust_saturation(img, saturation_factor: float):
    return _color("adjust_saturation", img, saturation_factor)


def adjust_sharpness(img, sharpness_factor: float):
    return _color("adjust_sharpness", img, sharpness_factor)


def adjust_hue(img, hue_factor: float):
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor ({hue_factor}) is not in [-0.5, 0.5].")
    return _color("adjust_hue", img, hue_factor, check_factor=False)


def adjust_gamma(img, gamma: float, gain: float = 1.0):
    if gamma < 0:
        raise ValueError("Gamma should be a non-negative real number")
    return _color("adjust_gamma", img, gamma, gain)


def rgb_to_grayscale(img, num_output_channels: int = 1):
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
    return rgb_to_grayscale(img, num_output_channels)


def invert(img):
    return _color("invert", img, check_factor=False)


def posterize(img, bits: int):
    if not 0 <= bits <= 8:
        raise ValueError(f"The number if bits should be between 0 and 8. Got {bits}")
    return _color("posterize", img, bits, check_factor=False)


def solarize(img, threshold: float):
    return _color("solarize", img, threshold, check_factor=False)


def autocontrast(img):
    return _color("autocontrast", img, check_factor=False)


def equalize(img):
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
