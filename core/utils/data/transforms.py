"""Image transforms with torchvision's names: ``ember.utils.data.transforms``.

``Compose, ToTensor, Normalize, RandomHorizontalFlip, RandomCrop, RandomResizedCrop, Lambda``.

Image layouts: tensors are ``(..., C, H, W)`` as in torchvision; NumPy arrays are ``(H, W)`` or
``(H, W, C)`` (the layout of a decoded image, what ``ToTensor`` takes); PIL images are accepted
and returned as PIL images. Random choices draw from ember's default generator, so
``ember.manual_seed`` makes them reproducible, and in DataLoader workers each batch gets its own
seed (see ``ember.utils.data``). ``RandomResizedCrop`` resizes like
``ember.nn.functional.interpolate`` / ``torch.nn.functional.interpolate`` with
``align_corners=False`` and no antialiasing.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from enum import Enum

import numpy as np

from ... import random as _random
from ...backend.dtype import from_numpy_dtype, get_default_dtype
from ...tensor import Tensor

__all__ = [
    "Compose",
    "ToTensor",
    "Normalize",
    "RandomHorizontalFlip",
    "RandomCrop",
    "RandomResizedCrop",
    "Lambda",
    "InterpolationMode",
]


class InterpolationMode(Enum):
    """Interpolation for resizing (the two ``RandomResizedCrop`` supports)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"


def _rng() -> np.random.Generator:
    # Looked up on every call: ember.manual_seed replaces the default generator's stream.
    return _random.default_generator.numpy()


def _is_pil(img) -> bool:
    return hasattr(img, "getbands") and hasattr(img, "mode") and hasattr(img, "size")


class _Image:
    """An image's pixels as an array plus how to put them back into the caller's type."""

    def __init__(self, img) -> None:
        self.kind = "tensor" if isinstance(img, Tensor) else "pil" if _is_pil(img) else "array"
        if self.kind == "tensor":
            if img.dim() < 2:
                raise ValueError(
                    f"Expected a tensor image of size (..., H, W), got {tuple(img.shape)}"
                )
            if type(img._data) is not np.ndarray:
                raise TypeError(
                    "image transforms work on CPU tensors; got a tensor on "
                    f"{img.device}, move it with .cpu() first"
                )
            self.array, self.h_axis = img._data, img.dim() - 2
        elif self.kind == "pil":
            self.array, self.h_axis, self.mode = np.asarray(img), 0, img.mode
        elif isinstance(img, np.ndarray):
            if img.ndim not in (2, 3):
                raise ValueError(
                    f"Expected an image array of shape (H, W) or (H, W, C), got {img.shape}"
                )
            self.array, self.h_axis = img, 0
        else:
            raise TypeError(
                f"img should be a Tensor, a NumPy array or a PIL Image. Got {type(img)}"
            )
        self.w_axis = self.h_axis + 1

    @property
    def hw(self) -> tuple[int, int]:
        return self.array.shape[self.h_axis], self.array.shape[self.w_axis]

    def wrap(self, array):
        if self.kind == "tensor":
            return Tensor._wrap(array)
        if self.kind == "pil":
            from PIL import Image

            return Image.fromarray(np.ascontiguousarray(array), mode=self.mode)
        return array


def _pair(size, name: str = "size") -> tuple[int, int]:
    if isinstance(size, numbers.Number):
        return int(size), int(size)
    if isinstance(size, Sequence) and len(size) == 1:
        return int(size[0]), int(size[0])
    if not isinstance(size, Sequence) or len(size) != 2:
        raise ValueError(f"Please provide only two dimensions (h, w) for {name}.")
    return int(size[0]), int(size[1])


class Compose:
    """Apply ``transforms`` one after another."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img):
        for t in self.transforms:
            img = t(img)
        return img

    def __repr__(self) -> str:
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{self.__class__.__name__}({body}\n)"


class ToTensor:
    """``(H, W[, C])`` array or PIL image -> ``(C, H, W)`` tensor; uint8 is scaled to [0, 1]
    as float32 (the default dtype), other dtypes keep their values and dtype."""

    def __call__(self, pic) -> Tensor:
        if _is_pil(pic):
            arr = np.array(pic, dtype=np.uint8) * 255 if pic.mode == "1" else np.asarray(pic)
        elif isinstance(pic, np.ndarray):
            arr = pic
        else:
            raise TypeError(f"pic should be PIL Image or ndarray. Got {type(pic)}")
        if arr.ndim not in (2, 3):
            raise ValueError(f"pic should be 2/3 dimensional. Got {arr.ndim} dimensions.")
        if arr.ndim == 2:
            arr = arr[:, :, None]
        chw = np.ascontiguousarray(arr.transpose(2, 0, 1))
        if chw.dtype == np.uint8:
            dt = get_default_dtype().np
            return Tensor._wrap(chw.astype(dt) / dt.type(255))
        from_numpy_dtype(chw.dtype)  # unsupported dtypes fail with a clear message
        return Tensor._wrap(chw)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"


class Normalize:
    """``(x - mean[c]) / std[c]`` for each channel ``c`` of a float ``(..., C, H, W)`` tensor."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False):
        self.mean = mean
        self.std = std
        self.inplace = inplace

    def __call__(self, tensor: Tensor) -> Tensor:
        if not isinstance(tensor, Tensor):
            raise TypeError(f"img should be Tensor Image. Got {type(tensor)}")
        if not tensor.is_floating_point():
            raise TypeError(f"Input tensor should be a float tensor. Got {tensor.dtype}.")
        if tensor.dim() < 3:
            raise ValueError(
                "Expected tensor to be a tensor image of size (..., C, H, W). Got "
                f"tensor.size() = {tensor.size()}"
            )
        data = tensor._data
        mean = np.asarray(self.mean, dtype=data.dtype).reshape(-1, 1, 1)
        std = np.asarray(self.std, dtype=data.dtype).reshape(-1, 1, 1)
        if (std == 0).any():
            raise ValueError(
                f"std evaluated to zero after conversion to {tensor.dtype}, leading "
                "to division by zero."
            )
        if mean.shape[0] not in (1, data.shape[-3]) or std.shape[0] not in (1, data.shape[-3]):
            raise ValueError(
                f"Normalize: mean has {mean.shape[0]} and std {std.shape[0]} values "
                f"for an image with {data.shape[-3]} channels"
            )
        if type(data) is not np.ndarray:  # pragma: no cover - GPU
            from ...backend.device import get_array_module

            xp = get_array_module(data)
            mean, std = xp.asarray(mean), xp.asarray(std)
        if tensor.requires_grad:
            return (tensor - Tensor._wrap(mean)) / Tensor._wrap(std)
        if self.inplace:
            data -= mean
            data /= std
            tensor._version_counter[0] += 1
            return tensor
        return Tensor._wrap((data - mean) / std)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(mean={self.mean}, std={self.std})"


class RandomHorizontalFlip:
    """Flip the image left-right with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, img):
        if _rng().random() >= self.p:
            return img
        im = _Image(img)
        return im.wrap(np.flip(im.array, axis=im.w_axis).copy())

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(p={self.p})"


_PAD_MODES = {
    "constant": "constant",
    "edge": "edge",
    "reflect": "reflect",
    "symmetric": "symmetric",
}


def _pad(im: _Image, left: int, top: int, right: int, bottom: int, fill, mode: str):
    widths = [(0, 0)] * im.array.ndim
    widths[im.h_axis] = (top, bottom)
    widths[im.w_axis] = (left, right)
    if mode == "constant":
        return np.pad(im.array, widths, mode="constant", constant_values=fill)
    return np.pad(im.array, widths, mode=_PAD_MODES[mode])


class RandomCrop:
    """Crop a random ``size`` window, after optional ``padding``.

    Args:
        size: ``(h, w)`` or an int for a square crop.
        padding: int (all sides), ``(left/right, top/bottom)`` or ``(left, top, right,
            bottom)``.
        pad_if_needed: pad images smaller than ``size`` up to it.
        fill: value for ``padding_mode="constant"``.
        padding_mode: ``"constant"``, ``"edge"``, ``"reflect"`` or ``"symmetric"``.
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
        if padding is not None:
            if isinstance(padding, numbers.Number):
                padding = [int(padding)] * 4
            elif isinstance(padding, Sequence) and len(padding) in (1, 2, 4):
                padding = list(padding)
                if len(padding) == 1:
                    padding = padding * 4
                elif len(padding) == 2:
                    padding = [padding[0], padding[1], padding[0], padding[1]]
            else:
                raise ValueError(
                    "Padding must be an int or a 1, 2, or 4 element tuple, not a "
                    f"{len(padding)} element tuple"
                )
        if padding_mode not in _PAD_MODES:
            raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
        if not isinstance(fill, numbers.Number):
            raise TypeError(f"fill should be a number, got {type(fill).__name__}")
        self.padding = padding
        self.pad_if_needed = pad_if_needed
        self.fill = fill
        self.padding_mode = padding_mode

    @staticmethod
    def get_params(img, output_size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Random ``(top, left, height, width)`` of a crop of ``output_size``."""
        return _crop_params(*_Image(img).hw, *output_size)

    def __call__(self, img):
        im = _Image(img)
        if self.padding is not None:
            im.array = _pad(im, *self.padding, self.fill, self.padding_mode)
        h, w = im.hw
        th, tw = self.size
        if self.pad_if_needed and (w < tw or h < th):
            dw, dh = max(tw - w, 0), max(th - h, 0)
            im.array = _pad(im, dw, dh, dw, dh, self.fill, self.padding_mode)
        i, j, th, tw = _crop_params(*im.hw, th, tw)
        return im.wrap(_crop(im, i, j, th, tw).copy())

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(size={self.size}, padding={self.padding})"


def _crop_params(h: int, w: int, th: int, tw: int) -> tuple[int, int, int, int]:
    if h < th or w < tw:
        raise ValueError(f"Required crop size {(th, tw)} is larger than input image size {(h, w)}")
    if w == tw and h == th:
        return 0, 0, h, w
    i = int(_rng().integers(0, h - th + 1))
    j = int(_rng().integers(0, w - tw + 1))
    return i, j, th, tw


def _crop(im: _Image, top: int, left: int, height: int, width: int):
    index = [slice(None)] * im.array.ndim
    index[im.h_axis] = slice(top, top + height)
    index[im.w_axis] = slice(left, left + width)
    return im.array[tuple(index)]


def _source_index(n_in: int, n_out: int, mode: InterpolationMode):
    """Source rows for each output row, as torch's upsampling kernels compute them (float32)."""
    scale = np.float32(n_in / n_out)
    dst = np.arange(n_out, dtype=np.float32)
    if mode is InterpolationMode.NEAREST:
        return np.minimum(np.floor(dst * scale).astype(np.int64), n_in - 1)
    src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    i0 = np.minimum(src.astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam1 = src - i0.astype(np.float32)
    return i0, i1, np.float32(1) - lam1, lam1


def _resize(array, out_h: int, out_w: int, mode: InterpolationMode, h_axis: int):
    """Resize the ``(h_axis, h_axis + 1)`` plane of ``array`` to ``(out_h, out_w)``."""
    if mode is InterpolationMode.NEAREST:
        rows = _source_index(array.shape[h_axis], out_h, mode)
        cols = _source_index(array.shape[h_axis + 1], out_w, mode)
        return array.take(rows, axis=h_axis).take(cols, axis=h_axis + 1)
    work = array.astype(np.float64 if array.dtype == np.float64 else np.float32)
    for axis, n_out in ((h_axis, out_h), (h_axis + 1, out_w)):
        i0, i1, w0, w1 = _source_index(work.shape[axis], n_out, mode)
        shape = [1] * work.ndim
        shape[axis] = n_out
        work = work.take(i0, axis=axis) * w0.reshape(shape) + work.take(i1, axis=axis) * w1.reshape(
            shape
        )
    if array.dtype.kind in "iub":
        info = np.iinfo(array.dtype) if array.dtype.kind != "b" else None
        work = np.round(work)
        if info is not None:
            work = np.clip(work, info.min, info.max)
        return work.astype(array.dtype)
    return work.astype(array.dtype, copy=False)


def _interpolation(mode) -> InterpolationMode:
    if isinstance(mode, InterpolationMode):
        return mode
    try:
        return InterpolationMode(str(mode).lower())
    except ValueError:
        raise ValueError(
            f"interpolation should be 'nearest' or 'bilinear' (or an "
            f"InterpolationMode), got {mode!r}"
        ) from None


class RandomResizedCrop:
    """Crop a random area and aspect ratio, then resize it to ``size`` (Inception-style).

    Args:
        size: output ``(h, w)`` or an int for a square output.
        scale: range of the crop's area as a fraction of the image's.
        ratio: range of the crop's aspect ratio (width / height), sampled log-uniformly.
        interpolation: ``"bilinear"`` (default) or ``"nearest"`` (or an
            :class:`InterpolationMode`); PyTorch's ``interpolate`` with
            ``align_corners=False``, without antialiasing.
    """

    def __init__(
        self, size, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0), interpolation="bilinear"
    ) -> None:
        self.size = _pair(size)
        if scale[0] > scale[1] or ratio[0] > ratio[1]:
            warnings.warn("Scale and ratio should be of kind (min, max)", stacklevel=2)
        self.scale = tuple(scale)
        self.ratio = tuple(ratio)
        self.interpolation = _interpolation(interpolation)

    @staticmethod
    def get_params(img, scale, ratio) -> tuple[int, int, int, int]:
        """Random ``(top, left, height, width)`` of the crop, torchvision's algorithm."""
        height, width = _Image(img).hw
        area = height * width
        log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
        rng = _rng()
        for _ in range(10):
            target_area = area * rng.uniform(scale[0], scale[1])
            aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
            w = int(round(math.sqrt(target_area * aspect_ratio)))
            h = int(round(math.sqrt(target_area / aspect_ratio)))
            if 0 < w <= width and 0 < h <= height:
                i = int(rng.integers(0, height - h + 1))
                j = int(rng.integers(0, width - w + 1))
                return i, j, h, w
        # Fallback to a central crop with the ratio clamped into range.
        in_ratio = float(width) / float(height)
        if in_ratio < min(ratio):
            w = width
            h = int(round(w / min(ratio)))
        elif in_ratio > max(ratio):
            h = height
            w = int(round(h * max(ratio)))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, img):
        im = _Image(img)
        i, j, h, w = self.get_params(img, self.scale, self.ratio)
        crop = _crop(im, i, j, h, w)
        return im.wrap(_resize(crop, self.size[0], self.size[1], self.interpolation, im.h_axis))

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(size={self.size}, scale={self.scale}, "
            f"ratio={self.ratio}, interpolation={self.interpolation.value})"
        )


class Lambda:
    """Apply a user function as a transform."""

    def __init__(self, lambd: Callable) -> None:
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__!r}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}()"
