"""``torchvision.transforms.functional`` on ember: each function takes a PIL image or a tensor
image ``(..., C, H, W)`` and returns the same kind.

PIL images go through the Pillow calls torchvision makes; tensors through array kernels
(NumPy or CuPy) that follow torchvision's tensor path, rounding included.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import numpy as np

import ember
from ember.backend.device import get_array_module
from ember.tensor import Tensor

from . import _functional_pil as F_pil
from . import _functional_tensor as F_t

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
    "perspective",
    "elastic_transform",
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
def _is_pil_image(img) -> bool:
    """torchvision's private check, which the detection references call."""
    return F_pil.is_pil(img)


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

# Geometry ops live in their own file (imported last: they use the helpers above).
from ._functional_geometry import (  # noqa: E402
    _output_size,  # noqa: F401 (still importable from here)
    _padding4,  # noqa: F401 (still importable from here)
    _pair,  # noqa: F401 (still importable from here)
    _shear_pair,  # noqa: F401 (still importable from here)
    affine,
    center_crop,
    crop,
    elastic_transform,
    five_crop,
    hflip,
    pad,
    perspective,
    resize,
    resized_crop,
    rotate,
    ten_crop,
    vflip,
)
