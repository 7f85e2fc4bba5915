"""v2's per-type kernels under torchvision's names (``resize_image``, ``resize_mask``,
``resize_bounding_boxes``, ``..._video``) and the kernels that only v2 has
(``gaussian_noise``, ``permute_channels``, ``grayscale_to_rgb``, ``jpeg``,
``uniform_temporal_subsample``, ``to_image``, ``get_num_frames``).

The per-type names take plain tensors, as torchvision's: an ``_image`` / ``_video`` kernel is
the dispatcher on a plain tensor (videos are ``(..., T, C, H, W)``); a ``_mask`` kernel wraps
the tensor as a ``Mask``; a ``_bounding_boxes`` kernel takes ``format`` and ``canvas_size``
and returns the boxes, plus the new canvas size where torchvision's does.
"""

from __future__ import annotations

import io as _io

import numpy as np

import ember
from ember.backend.device import get_array_module
from ember.tensor import Tensor

from ... import tv_tensors as tv
from .. import functional as _v1
from .._functional_pil import is_pil
from ._utils import is_pure_tensor

__all__ = [
    "gaussian_noise",
    "permute_channels",
    "grayscale_to_rgb",
    "jpeg",
    "uniform_temporal_subsample",
    "to_image",
    "get_num_frames",
    "is_pure_tensor",
    "sanitize_bounding_boxes",
    "posterize",
]


def _keep(out, like):
    return type(like)._from_array(out._data) if isinstance(like, tv.Image) else out


# value bits per integer dtype (the sign bit excluded), as torchvision's _num_value_bits
_VALUE_BITS = {"uint8": 8, "int8": 7, "int16": 15, "uint16": 16, "int32": 31, "int64": 63}


def posterize(inpt, bits: int):
    """Keep ``bits`` bits per channel. Unlike v1's, v2's takes float images too: they are
    quantised to ``2**bits`` levels (``floor(x * 2**bits) / 2**bits``, clamped)."""
    if is_pil(inpt):
        return _v1.posterize(inpt, bits)
    if not isinstance(bits, int) or not 0 <= bits <= 8:
        raise TypeError(f"bits must be a positive integer in the range [0, 8], got {bits} instead.")
    img = Tensor._wrap(inpt._data)
    if img.is_floating_point():
        levels = 1 << bits
        return _keep((img * levels).floor().clamp(0, levels - 1) * (1.0 / levels), inpt)
    name = str(img.dtype).rsplit(".", 1)[-1]
    if name not in _VALUE_BITS:
        raise TypeError(
            f"Number of value bits is only defined for integer dtypes, but got {img.dtype}."
        )
    n = _VALUE_BITS[name]
    if bits >= n:
        return inpt
    return _keep(img & (((1 << bits) - 1) << (n - bits)), inpt)


def gaussian_noise(inpt, mean: float = 0.0, sigma: float = 0.1, clip: bool = True):
    """Add Gaussian noise ``N(mean, sigma)`` (in [0, 1] units) to a float or ``uint8`` image,
    clamped to the valid range when ``clip``."""
    if not isinstance(inpt, Tensor):
        raise TypeError(f"gaussian_noise() expects a tensor image, got {type(inpt).__name__}")
    if sigma < 0:
        raise ValueError(f"sigma shouldn't be negative. Got {sigma}")
    img = Tensor._wrap(inpt._data)
    if img.is_floating_point():
        out = img + (mean + ember.randn_like(img) * sigma)
        return _keep(ember.clamp(out, 0, 1) if clip else out, inpt)
    if img.dtype == ember.uint8:
        # int16 noise as torchvision adds it (truncated toward zero)
        noise = (mean * 255 + ember.randn(*img.shape) * (sigma * 255)).to(ember.int16)
        out = img.to(ember.int16) + noise
        return _keep((ember.clamp(out, 0, 255) if clip else out).to(ember.uint8), inpt)
    raise ValueError(
        f"Input tensor is expected to be in uint8 or float dtype, got dtype={img.dtype}"
    )


def permute_channels(inpt, permutation: list[int]):
    """Reorder the channels of an image: output channel ``i`` is input channel
    ``permutation[i]``."""
    if is_pil(inpt):
        return _v1.to_pil_image(permute_channels(_v1.pil_to_tensor(inpt), permutation))
    shape = tuple(inpt.shape)
    c, h, w = shape[-3:]
    if len(permutation) != c:
        raise ValueError(
            f"Length of permutation does not match number of channels: {len(permutation)} != {c}"
        )
    if inpt.numel() == 0:
        return inpt
    a = inpt._data.reshape(-1, c, h, w)[:, list(permutation)]
    return _keep(Tensor._wrap(a.reshape(shape)), inpt)


def grayscale_to_rgb(inpt):
    """A 1-channel image repeated to 3 channels; RGB images pass through."""
    if is_pil(inpt):
        return inpt.convert(mode="RGB")
    if inpt.shape[-3] >= 3:
        return inpt
    a = inpt._data
    return _keep(Tensor._wrap(get_array_module(a).repeat(a, 3, axis=-3)), inpt)


def jpeg(inpt, quality: int):
    """JPEG-compress and decode an image at ``quality`` (1-100), through Pillow's encoder
    (torchvision uses libjpeg directly: pixels may differ by a few levels)."""
    from PIL import Image as _PIL

    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be an integer from 1 to 100, got quality={quality}")

    def round_trip(pil):
        buf = _io.BytesIO()
        pil.save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        return _PIL.open(buf).convert(pil.mode)

    if is_pil(inpt):
        return round_trip(inpt)
    if inpt.dtype != ember.uint8:
        raise TypeError(f"Input tensor dtype should be uint8, got {inpt.dtype}.")
    shape = tuple(inpt.shape)
    a = np.asarray(inpt.detach().cpu().numpy()).reshape((-1,) + shape[-3:])
    outs = []
    for img in a:
        pil = _PIL.fromarray(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0))
        back = np.asarray(round_trip(pil))
        outs.append(back[None] if back.ndim == 2 else back.transpose(2, 0, 1))
    out = np.stack(outs).reshape(shape) if outs else a.reshape(shape)
    return _keep(ember.tensor(out, device=inpt.device), inpt)


def uniform_temporal_subsample(inpt, num_samples: int):
    """``num_samples`` frames spread evenly over a video ``(..., T, C, H, W)``."""
    t_max = int(inpt.shape[-4]) - 1
    idx = ember.linspace(0, t_max, num_samples).long()
    return ember.index_select(inpt, -4, idx)


def get_num_frames(inpt) -> int:
    """The number of frames ``T`` of a video ``(..., T, C, H, W)``."""
    return int(inpt.shape[-4])


def to_image(inpt) -> tv.Image:
    """A PIL image, an ``(H, W, C)`` ndarray or a tensor as a ``tv_tensors.Image``."""
    if isinstance(inpt, np.ndarray):
        arr = inpt[:, :, None] if inpt.ndim == 2 else inpt
        return tv.Image(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    if is_pil(inpt):
        return tv.Image(_v1.pil_to_tensor(inpt))
    if isinstance(inpt, Tensor):
        return tv.Image(inpt)
    raise TypeError(
        f"Input can either be a pure Tensor, a numpy array, or a PIL image, "
        f"but got {type(inpt)} instead."
    )


def sanitize_bounding_boxes(
    bounding_boxes,
    format=None,
    canvas_size=None,
    min_size: float = 1.0,
    min_area: float = 1.0,
):
    """Drop degenerate boxes (a side under ``min_size``, an area under ``min_area``, a
    coordinate outside the canvas); returns ``(kept boxes, keep mask)``, the mask to subset
    the labels with. ``format`` and ``canvas_size`` are for plain tensors only."""
    from ._detection import SanitizeBoundingBoxes

    if is_pure_tensor(bounding_boxes):
        if format is None or canvas_size is None:
            raise ValueError(
                "format and canvas_size cannot be None if bounding_boxes is a pure tensor. "
                f"Got format={format} and canvas_size={canvas_size}."
            )
        box = tv.BoundingBoxes(bounding_boxes, format=format, canvas_size=canvas_size)
    elif isinstance(bounding_boxes, tv.BoundingBoxes):
        if format is not None or canvas_size is not None:
            raise ValueError(
                "format and canvas_size must be None when bounding_boxes is a tv_tensors."
                f"BoundingBoxes instance. Got format={format} and canvas_size={canvas_size}."
            )
        box = bounding_boxes
    else:
        raise ValueError(
            "bounding_boxes must be a tv_tensors.BoundingBoxes instance or a pure tensor."
        )
    checker = SanitizeBoundingBoxes.__new__(SanitizeBoundingBoxes)
    checker.min_size, checker.min_area = min_size, min_area
    valid = checker._valid(box)
    kept = Tensor._wrap(box._data)[valid]
    if isinstance(bounding_boxes, tv.BoundingBoxes):
        kept = tv.wrap(kept, like=bounding_boxes)
    return kept, valid
