"""PIL kernels behind ``transforms.functional``: the same Pillow calls torchvision makes."""

from __future__ import annotations

import numpy as np


def _pil():
    try:
        from PIL import Image, ImageEnhance, ImageOps
    except ImportError as exc:  # pragma: no cover - Pillow is the `vision` extra
        raise ImportError(
            "ember.vision needs Pillow for PIL images: pip install 'ember[vision]' (or pillow)"
        ) from exc
    return Image, ImageEnhance, ImageOps


def is_pil(img) -> bool:
    try:
        from PIL import Image
    except ImportError:
        return False
    return isinstance(img, Image.Image)


PIL_MODES = {
    "nearest": 0,
    "lanczos": 1,
    "bilinear": 2,
    "bicubic": 3,
    "box": 4,
    "hamming": 5,
    "nearest-exact": 0,
}  # as torchvision maps it for PIL


def get_dimensions(img) -> list[int]:
    channels = len(img.getbands())
    width, height = img.size
    return [channels, height, width]


def resize(img, size, interpolation: str):
    h, w = size
    return img.resize((w, h), PIL_MODES[interpolation])


def crop(img, top: int, left: int, height: int, width: int):
    return img.crop((left, top, left + width, top + height))


def pad(img, padding, fill=0, padding_mode: str = "constant"):
    """``padding`` is ``(left, top, right, bottom)``; negative values crop."""
    Image, _, ImageOps = _pil()
    if min(padding) < 0:
        w, h = img.size
        left, top, right, bottom = (max(-p, 0) for p in padding)
        img = img.crop((left, top, w - right, h - bottom))
    padding = tuple(max(p, 0) for p in padding)
    if padding_mode == "constant":
        return ImageOps.expand(img, border=padding, fill=_fill(img, fill) or 0)
    left, top, right, bottom = padding
    arr = np.asarray(img)
    widths = [(top, bottom), (left, right)] + [(0, 0)] * (arr.ndim - 2)
    out = Image.fromarray(np.pad(arr, widths, mode=padding_mode), mode=img.mode)
    if img.mode == "P":
        out.putpalette(img.getpalette())
    return out


def hflip(img):
    Image, _, _ = _pil()
    return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def vflip(img):
    Image, _, _ = _pil()
    return img.transpose(Image.Transpose.FLIP_TOP_BOTTOM)


def _fill(img, fill):
    if fill is None:
        return None
    bands = len(img.getbands())
    if isinstance(fill, (int, float)):
        fill = [fill] * bands
    fill = tuple(int(v) if img.mode != "F" else float(v) for v in fill)
    if len(fill) not in (1, bands):
        raise ValueError(
            f"The number of elements in 'fill' does not match the number of bands "
            f"of the image ({len(fill)} != {bands})"
        )
    return fill[0] if bands == 1 else (fill * bands if len(fill) == 1 else fill)


def affine(img, matrix, interpolation: str, fill=None):
    Image, _, _ = _pil()
    return img.transform(
        img.size,
        Image.Transform.AFFINE,
        matrix,
        PIL_MODES[interpolation],
        fillcolor=_fill(img, fill),
    )


def perspective(img, coeffs, interpolation: str, fill=None):
    Image, _, _ = _pil()
    return img.transform(
        img.size,
        Image.Transform.PERSPECTIVE,
        coeffs,
        PIL_MODES[interpolation],
        fillcolor=_fill(img, fill),
    )


def rotate(img, angle: float, interpolation: str, expand: bool, center, fill):
    return img.rotate(angle, PIL_MODES[interpolation], expand, center, fillcolor=_fill(img, fill))


def adjust_brightness(img, factor):
    return _pil()[1].Brightness(img).enhance(factor)


def adjust_contrast(img, factor):
    return _pil()[1].Contrast(img).enhance(factor)


def adjust_saturation(img, factor):
    return _pil()[1].Color(img).enhance(factor)


def adjust_sharpness(img, factor):
    return _pil()[1].Sharpness(img).enhance(factor)


def adjust_hue(img, hue_factor: float):
    Image, _, _ = _pil()
    mode = img.mode
    if mode in {"L", "1", "I", "F"}:
        return img
    h, s, v = img.convert("HSV").split()
    np_h = np.array(h, dtype=np.uint8)
    # uint8 wrap-around is the rotation of the hue circle.
    np_h = (np_h.astype(np.int64) + int(np.int64(hue_factor * 255))) % 256
    h = Image.fromarray(np_h.astype(np.uint8), "L")
    return Image.merge("HSV", (h, s, v)).convert(mode)


def adjust_gamma(img, gamma: float, gain: float = 1.0):
    mode = img.mode
    lut = [int((255 + 1 - 1e-3) * gain * pow(v / 255.0, gamma)) for v in range(256)] * 3
    return img.convert("RGB").point(lut).convert(mode)


def to_grayscale(img, num_output_channels: int):
    Image, _, _ = _pil()
    gray = img.convert("L")
    if num_output_channels == 3:
        arr = np.asarray(gray)
        return Image.fromarray(np.dstack([arr, arr, arr]), "RGB")
    return gray


def invert(img):
    return _pil()[2].invert(img)


def posterize(img, bits: int):
    return _pil()[2].posterize(img, bits)


def solarize(img, threshold: float):
    return _pil()[2].solarize(img, threshold)


def autocontrast(img):
    return _pil()[2].autocontrast(img)


def equalize(img):
    return _pil()[2].equalize(img)
