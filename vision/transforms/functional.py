"""``torchvision.transforms.functional`` on ember: each function takes a PIL image or a tensor
image ``(..., C, H, W)`` and returns the same kind.

PIL images go through the Pillow calls torchvision makes; tensors through array kernels
(NumPy or CuPy) that follow torchvision's tensor path, rounding included.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from enum import Enum

import numpy as np

import ember
from ember.backend.device import get_array_module
from ember.tensor import Tensor

from . import _functional_pil as F_pil
from . import _functional_tensor as F_t
from . import _geometry

__all__ = [
    "InterpolationMode",
    "get_dimensions",
    "get_image_size",
    "get_image_num_channels",
    "to_tensor",
    "pil_to_tensor",
    "to_pil_image",
    "convert_image_dtype",
    "normalize",
    "resize",
    "crop",
    "center_crop",
    "resized_crop",
    "pad",
    "hflip",
    "vflip",
    "rotate",
    "affine",
    "five_crop",
    "ten_crop",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "adjust_gamma",
    "adjust_sharpness",
    "rgb_to_grayscale",
    "to_grayscale",
    "gaussian_blur",
    "invert",
    "posterize",
    "solarize",
    "autocontrast",
    "equalize",
    "erase",
]


class InterpolationMode(Enum):
    """Interpolation modes, torchvision's names and values."""

    NEAREST = "nearest"
    NEAREST_EXACT = "nearest-exact"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    BOX = "box"
    HAMMING = "hamming"
    LANCZOS = "lanczos"


def _mode(interpolation) -> str:
    if isinstance(interpolation, InterpolationMode):
        return interpolation.value
    if isinstance(interpolation, int):  # PIL's integer constants, as torchvision accepts
        inv = {v: k for k, v in F_pil.PIL_MODES.items() if k != "nearest-exact"}
        if interpolation in inv:
            return inv[interpolation]
    if isinstance(interpolation, str) and interpolation in {m.value for m in InterpolationMode}:
        return interpolation
    raise TypeError(f"interpolation should be an InterpolationMode, got {interpolation!r}")


def _check(img) -> bool:
    """True for a tensor image, False for PIL; anything else is an error."""
    if isinstance(img, Tensor):
        if img.dim() < 2:
            raise TypeError(
                f"Tensor is not a torch image: expected (..., H, W), got shape {tuple(img.shape)}"
            )
        return True
    if F_pil.is_pil(img):
        return False
    raise TypeError(f"img should be PIL Image or Tensor. Got {type(img)}")


def _arr(img):
    a = img.detach()._data
    return a[None] if a.ndim == 2 else a


def _wrap(a) -> Tensor:
    return Tensor._wrap(a)


# ---- introspection and conversion --------------------------------------------------------------
def get_dimensions(img) -> list[int]:
    """``[channels, height, width]``."""
    if _check(img):
        c = 1 if img.dim() == 2 else int(img.shape[-3])
        return [c, int(img.shape[-2]), int(img.shape[-1])]
    return F_pil.get_dimensions(img)


def get_image_size(img) -> list[int]:
    """``[width, height]``."""
    _, h, w = get_dimensions(img)
    return [w, h]


def get_image_num_channels(img) -> int:
    """Return the number of channels of a PIL image or a tensor image.

    A 2-D tensor counts as one channel.
    """
    return get_dimensions(img)[0]


def to_tensor(pic) -> Tensor:
    """PIL image or ``(H, W[, C])`` ndarray -> ``(C, H, W)`` tensor; uint8 scaled to [0, 1]."""
    if F_pil.is_pil(pic):
        dtypes = {"I": np.int32, "I;16": np.int16, "F": np.float32}
        arr = np.array(pic, dtypes.get(pic.mode, np.uint8), copy=True)
        if pic.mode == "1":
            arr = 255 * arr
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {pic.ndim} dimensions.")
        arr = pic
    else:
        raise TypeError(f"pic should be PIL Image or ndarray. Got {type(pic)}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
    if chw.dtype == np.uint8:
        ftype = ember.get_default_dtype()
        return ember.from_numpy(chw).to(ftype).div(255)
    return ember.from_numpy(chw)


def pil_to_tensor(pic) -> Tensor:
    """PIL image -> ``(C, H, W)`` tensor, values and dtype kept."""
    if not F_pil.is_pil(pic):
        raise TypeError(f"pic should be PIL Image. Got {type(pic)}")
    arr = np.array(pic, copy=True)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return ember.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


_NP_MODES = {np.uint8: "L", np.int16: "I;16", np.int32: "I", np.float32: "F"}


def to_pil_image(pic, mode: str | None = None):
    """``(C, H, W)`` tensor or ``(H, W, C)`` ndarray -> PIL image (float tensors are scaled by
    255 and truncated to uint8, as torchvision does)."""
    Image = F_pil._pil()[0]
    if isinstance(pic, Tensor):
        if pic.dim() not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {pic.dim()} dimensions.")
        a = np.asarray(pic.detach().cpu()._data)
        if a.ndim == 2:
            a = a[None]
        if a.dtype.kind == "f" and mode != "F":
            a = (a * 255).astype(np.uint8)
        npimg = a.transpose(1, 2, 0)
    elif isinstance(pic, np.ndarray):
        if pic.ndim not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {pic.ndim} dimensions.")
        npimg = pic[:, :, None] if pic.ndim == 2 else pic
    else:
        raise TypeError(f"pic should be Tensor or ndarray. Got {type(pic)}.")
    c = npimg.shape[2]
    if c == 1:
        npimg = npimg[:, :, 0]
        expected = _NP_MODES.get(npimg.dtype.type)
        if expected is None:
            raise TypeError(f"Input type {npimg.dtype} is not supported")
        if mode is not None and mode != expected and not (mode == "L" and expected == "L"):
            raise ValueError(
                f"Incorrect mode ({mode}) supplied for input type {npimg.dtype}. "
                f"Should be {expected}"
            )
        mode = expected
    elif mode is None:
        if npimg.dtype != np.uint8:
            raise TypeError(f"Input type {npimg.dtype} is not supported")
        modes = {2: "LA", 3: "RGB", 4: "RGBA"}
        if c not in modes:
            raise ValueError(f"pic should have 1 to 4 channels, got {c}")
        mode = modes[c]
    return Image.fromarray(np.ascontiguousarray(npimg), mode=mode)


def convert_image_dtype(image: Tensor, dtype=None) -> Tensor:
    """Convert a tensor image's dtype, rescaling values (uint8 255 <-> float 1.0)."""
    if not isinstance(image, Tensor):
        raise TypeError("Input img should be Tensor Image")
    dtype = dtype or ember.float32
    return _wrap(F_t.convert_image_dtype(image.detach()._data, dtype.np))


def normalize(
    tensor: Tensor, mean: Sequence[float], std: Sequence[float], inplace: bool = False
) -> Tensor:
    """``(x - mean[c]) / std[c]`` per channel of a float tensor image."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"img should be Tensor Image. Got {type(tensor)}")
    if not tensor.is_floating_point():
        raise TypeError(f"Input tensor should be a float tensor. Got {tensor.dtype}.")
    if tensor.dim() < 3:
        raise ValueError(
            f"Expected tensor to be a tensor image of size (..., C, H, W). Got "
            f"tensor.size() = {tuple(tensor.shape)}"
        )
    a = tensor.detach()._data
    xp = get_array_module(a)
    m = xp.asarray(np.asarray(mean, a.dtype)).reshape(-1, 1, 1)
    s = xp.asarray(np.asarray(std, a.dtype)).reshape(-1, 1, 1)
    if bool((s == 0).any()):
        raise ValueError(
            f"std evaluated to zero after conversion to {tensor.dtype}, leading "
            "to division by zero."
        )
    out = (a - m) / s
    if inplace:
        a[...] = out
        return tensor
    return _wrap(out.astype(a.dtype, copy=False))


# ---- geometry ---------------------------------------------------------------------------------
def _output_size(h: int, w: int, size, max_size) -> list[int]:
    if isinstance(size, numbers.Number) or (isinstance(size, Sequence) and len(size) == 1):
        requested = int(size if isinstance(size, numbers.Number) else size[0])
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = requested, int(requested * long / short)
        if max_size is not None:
            if max_size <= requested:
                raise ValueError(
                    f"max_size = {max_size} must be strictly greater than the "
                    f"requested size for the smaller edge size = {size}"
                )
            if new_long > max_size:
                new_short, new_long = int(max_size * new_short / new_long), max_size
        return [new_long, new_short] if w <= h else [new_short, new_long]
    if size is None and max_size is not None:
        scale = max_size / max(h, w)
        return [int(h * scale), int(w * scale)]
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError("If size is a sequence, it should have 1 or 2 values")
    if max_size is not None:
        raise ValueError(
            "max_size should only be passed if size specifies the length of the "
            "smaller edge, i.e. size should be an int or a sequence of length 1"
        )
    return [int(size[0]), int(size[1])]


def resize(
    img,
    size,
    interpolation=InterpolationMode.BILINEAR,
    max_size: int | None = None,
    antialias: bool | None = True,
):
    """Resize to ``size`` ((h, w), or an int for the shorter edge keeping the aspect ratio)."""
    mode = _mode(interpolation)
    _, h, w = get_dimensions(img)
    oh, ow = _output_size(h, w, size, max_size)
    if (oh, ow) == (h, w):
        return img
    if not _check(img):
        return F_pil.resize(img, (oh, ow), mode)
    a = img.detach()._data
    return _wrap(_geometry.resize(a, oh, ow, mode, bool(antialias)))


def crop(img, top: int, left: int, height: int, width: int):
    """Crop the box at ``(top, left)`` of size ``(height, width)``; zero-padded outside."""
    if not _check(img):
        return F_pil.crop(img, top, left, height, width)
    return _wrap(F_t.crop(img.detach()._data, top, left, height, width))


def _pair(size, name="size") -> list[int]:
    if isinstance(size, numbers.Number):
        return [int(size), int(size)]
    if isinstance(size, Sequence) and len(size) == 1:
        return [int(size[0]), int(size[0])]
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"Please provide only two dimensions (h, w) for {name}.")
    return [int(size[0]), int(size[1])]


def center_crop(img, output_size):
    """Crop the centre (padded with zeros where the crop is larger than the image)."""
    th, tw = _pair(output_size, "output_size")
    _, h, w = get_dimensions(img)
    if tw > w or th > h:
        pads = [
            (tw - w) // 2 if tw > w else 0,
            (th - h) // 2 if th > h else 0,
            (tw - w + 1) // 2 if tw > w else 0,
            (th - h + 1) // 2 if th > h else 0,
        ]
        img = pad(img, pads, fill=0)
        _, h, w = get_dimensions(img)
        if (th, tw) == (h, w):
            return img
    top = int(round((h - th) / 2.0))
    left = int(round((w - tw) / 2.0))
    return crop(img, top, left, th, tw)


def resized_crop(
    img,
    top: int,
    left: int,
    height: int,
    width: int,
    size,
    interpolation=InterpolationMode.BILINEAR,
    antialias: bool | None = True,
):
    """Crop a box of an image, then resize the crop to ``size``.

    Args:
        img: a PIL image or a tensor image ``(..., H, W)``.
        top: the row of the box's top-left corner.
        left: the column of the box's top-left corner.
        height: the height of the box.
        width: the width of the box.
        size: the output size, as :func:`~ember.vision.transforms.functional.resize` takes it.
        interpolation: an :class:`~ember.vision.transforms.functional.InterpolationMode`,
            bilinear by default.
        antialias: low-pass filter tensors before downsampling.
    """
    return resize(crop(img, top, left, height, width), size, interpolation, antialias=antialias)


def _padding4(padding) -> list[int]:
    if isinstance(padding, numbers.Number):
        return [int(padding)] * 4
    if not isinstance(padding, Sequence) or len(padding) not in (1, 2, 4):
        raise ValueError(
            f"Padding must be an int or a 1, 2, or 4 element tuple, not a "
            f"{len(padding) if isinstance(padding, Sequence) else padding} "
            "element tuple"
        )
    p = [int(v) for v in padding]
    if len(p) == 1:
        return p * 4
    if len(p) == 2:
        return [p[0], p[1], p[0], p[1]]
    return p


def pad(img, padding, fill=0, padding_mode: str = "constant"):
    """Pad the borders: ``padding`` is an int, ``(lr, tb)`` or ``(left, top, right, bottom)``;
    ``padding_mode`` one of constant, edge, reflect, symmetric."""
    if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
        raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
    p = _padding4(padding)
    if not _check(img):
        return F_pil.pad(img, p, fill, padding_mode)
    a = _arr(img)
    if isinstance(fill, (tuple, list)):
        if len(fill) != 1:
            raise ValueError("tensor pad supports only a number as fill")
        fill = fill[0]
    out = F_t.pad(a, p, fill if fill is not None else 0, padding_mode)
    return _wrap(out if img.dim() > 2 else out[0])


def hflip(img):
    """Flip a PIL image or a tensor image ``(..., H, W)`` left to right."""
    if not _check(img):
        return F_pil.hflip(img)
    return _wrap(img.detach()._data[..., ::-1].copy())


def vflip(img):
    """Flip a PIL image or a tensor image ``(..., H, W)`` upside down."""
    if not _check(img):
        return F_pil.vflip(img)
    return _wrap(img.detach()._data[..., ::-1, :].copy())


def five_crop(img, size):
    """(top-left, top-right, bottom-left, bottom-right, center) crops of ``size``."""
    ch, cw = _pair(size)
    _, h, w = get_dimensions(img)
    if ch > h or cw > w:
        raise ValueError(f"Requested crop size {size} is bigger than input size {(h, w)}")
    return (
        crop(img, 0, 0, ch, cw),
        crop(img, 0, w - cw, ch, cw),
        crop(img, h - ch, 0, ch, cw),
        crop(img, h - ch, w - cw, ch, cw),
        center_crop(img, [ch, cw]),
    )


def ten_crop(img, size, vertical_flip: bool = False):
    """Crop the corners and centre of an image, then those of its flipped copy.

    The first five crops are those of :func:`~ember.vision.transforms.functional.five_crop`;
    the last five come from the flipped image in the same order.

    Args:
        img: a PIL image or a tensor image.
        size: ``(h, w)`` of each crop, or an int for square crops.
        vertical_flip: flip upside down instead of left to right.

    Returns:
        A tuple of ten images.
    """
    first = five_crop(img, size)
    flipped = vflip(img) if vertical_flip else hflip(img)
    return first + five_crop(flipped, size)


def _shear_pair(shear) -> list[float]:
    if isinstance(shear, numbers.Number):
        return [float(shear), 0.0]
    shear = [float(s) for s in shear]
    if len(shear) == 1:
        return [shear[0], shear[0]]
    if len(shear) != 2:
        raise ValueError(f"Shear should be a sequence containing two values. Got {shear}")
    return shear


def affine(
    img,
    angle: float,
    translate: Sequence[int],
    scale: float,
    shear,
    interpolation=InterpolationMode.NEAREST,
    fill=None,
    center=None,
):
    """Rotate by ``angle`` degrees, translate, scale and shear about ``center``."""
    mode = _mode(interpolation)
    if not isinstance(translate, Sequence) or len(translate) != 2:
        raise ValueError("Argument translate should be a sequence of length 2")
    if scale <= 0.0:
        raise ValueError("Argument scale should be positive")
    shear = _shear_pair(shear)
    _, h, w = get_dimensions(img)
    if not _check(img):
        c = [w * 0.5, h * 0.5] if center is None else list(center)
        m = _geometry.inverse_affine_matrix(c, float(angle), translate, scale, shear)
        return F_pil.affine(img, m, mode, fill)
    c = [0.0, 0.0] if center is None else [ci - s * 0.5 for ci, s in zip(center, (w, h))]
    m = _geometry.inverse_affine_matrix(
        c, float(angle), [float(t) for t in translate], scale, shear
    )
    return _wrap(_geometry.warp_affine(_arr(img), m, mode, fill))


def rotate(
    img,
    angle: float,
    interpolation=InterpolationMode.NEAREST,
    expand: bool = False,
    center=None,
    fill=None,
):
    """Rotate counter-clockwise by ``angle`` degrees."""
    mode = _mode(interpolation)
    if not _check(img):
        return F_pil.rotate(img, angle, mode, expand, center, fill)
    _, h, w = get_dimensions(img)
    c = [0.0, 0.0] if center is None else [ci - s * 0.5 for ci, s in zip(center, (w, h))]
    m = _geometry.inverse_affine_matrix(c, -float(angle), [0.0, 0.0], 1.0, [0.0, 0.0])
    size = _geometry.affine_output_size(m, w, h) if expand else None
    return _wrap(_geometry.warp_affine(_arr(img), m, mode, fill, size))


# Colour ops and blur live in their own file (imported last: they use the helpers above).
from ._functional_color import (  # noqa: E402
    adjust_brightness,
    adjust_contrast,
    adjust_gamma,
    adjust_hue,
    adjust_saturation,
    adjust_sharpness,
    autocontrast,
    equalize,
    erase,
    gaussian_blur,
    invert,
    posterize,
    rgb_to_grayscale,
    solarize,
    to_grayscale,
)
