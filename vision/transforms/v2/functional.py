"""``ember.vision.transforms.v2.functional``: v1's ops, plus bounding boxes and masks.

The geometric ops dispatch on the input's type: ``tv_tensors.BoundingBoxes`` move with the
image (and are clamped to the new canvas after a crop or pad), ``tv_tensors.Mask`` resamples
with nearest, ``tv_tensors.Image`` keeps its type; PIL images and plain tensors go to v1.
"""

from __future__ import annotations

import numpy as np

from ember.backend.device import get_array_module
from ember.tensor import Tensor

from ... import tv_tensors as tv
from .. import functional as _v1
from ..functional import *  # noqa: F403
from ..functional import (
    InterpolationMode,
    _output_size,
    _padding4,
    _pair,
    convert_image_dtype,
    get_dimensions,
    get_image_num_channels,
    get_image_size,
)
from ..functional import __all__ as _v1_all
from . import _box_formats as _bf
from . import _keypoints as _kp
from . import _rotated as _rot

__all__ = list(_v1_all) + [
    "to_dtype",
    "get_size",
    "get_num_channels",
    "horizontal_flip",
    "vertical_flip",
    "convert_bounding_box_format",
    "clamp_bounding_boxes",
]

to_dtype = convert_image_dtype
get_num_channels = get_image_num_channels


def get_size(inpt) -> list[int]:
    """``[height, width]`` (v2's order); for boxes, their canvas size."""
    if isinstance(inpt, (tv.BoundingBoxes, tv.KeyPoints)):
        return list(inpt.canvas_size)
    if isinstance(inpt, tv.Mask):
        return [int(inpt.shape[-2]), int(inpt.shape[-1])]
    w, h = get_image_size(inpt)
    return [h, w]


# ---- box formats ---------------------------------------------------------------------------------
def _to_xyxy(a, fmt: tv.BoundingBoxFormat, xp):
    if fmt == tv.BoundingBoxFormat.XYXY:
        return a
    if fmt == tv.BoundingBoxFormat.XYWH:
        x, y, w, h = (a[..., i] for i in range(4))
        return xp.stack([x, y, x + w, y + h], axis=-1)
    cx, cy, w, h = (a[..., i] for i in range(4))
    return xp.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)


def _from_xyxy(a, fmt: tv.BoundingBoxFormat, xp):
    if fmt == tv.BoundingBoxFormat.XYXY:
        return a
    x1, y1, x2, y2 = (a[..., i] for i in range(4))
    if fmt == tv.BoundingBoxFormat.XYWH:
        return xp.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)
    return xp.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)


def _boxes_like(array, like: tv.BoundingBoxes, canvas_size=None, format=None):
    """``array`` as ``BoundingBoxes`` with ``like``'s metadata (``canvas_size`` / ``format``
    override it)."""
    return tv.BoundingBoxes._from_array(
        array,
        format=like.format if format is None else format,
        canvas_size=tuple(like.canvas_size if canvas_size is None else canvas_size),
        clamping_mode=like.clamping_mode,
    )


def _rotated(boxes) -> bool:
    return isinstance(boxes, tv.BoundingBoxes) and tv.is_rotated_bounding_format(boxes.format)


def _box_op(boxes: tv.BoundingBoxes, fn, canvas_size=None, clamp: bool = False):
    """Apply ``fn`` to the boxes in XYXY (float) and return them in their own format (clamped
    to the canvas with ``clamp`` unless the boxes' ``clamping_mode`` is None)."""
    _no_rotated(boxes)
    a = boxes._data
    xp = get_array_module(a)
    f = a if a.dtype.kind == "f" else a.astype(np.float32)
    out = fn(_to_xyxy(f, boxes.format, xp))
    canvas = canvas_size or boxes.canvas_size
    if clamp and boxes.clamping_mode is not None:
        h, w = canvas
        out = xp.stack(
            [
                xp.clip(out[..., 0], 0, w),
                xp.clip(out[..., 1], 0, h),
                xp.clip(out[..., 2], 0, w),
                xp.clip(out[..., 3], 0, h),
            ],
            axis=-1,
        )
    out = _from_xyxy(out, boxes.format, xp)
    if a.dtype.kind != "f":
        out = xp.round(out)
    return _boxes_like(out.astype(a.dtype), boxes, canvas)


def convert_bounding_box_format(inpt, old_format=None, new_format=None, inplace: bool = False):
    """``inpt`` in box format ``new_format``: a ``BoundingBoxes`` (its own format is the old
    one; ``old_format`` must not be passed) or a plain tensor ``(..., K)`` with ``old_format``.
    Rotated formats (``XYWHR``, ``CXCYWHR``, ``XYXYXYXY``) convert among themselves only."""
    if new_format is None:
        raise TypeError("convert_bounding_box_format() missing required argument 'new_format'")
    new = _bf._as_format(new_format)
    if isinstance(inpt, tv.BoundingBoxes):
        if old_format is not None:
            raise ValueError("For bounding box tv_tensor inputs, `old_format` must not be passed.")
        out = _bf.convert_array(inpt._data, inpt.format, new)
        return _boxes_like(out, inpt, format=new)
    if isinstance(inpt, Tensor) and not isinstance(inpt, tv.TVTensor):
        if old_format is None:
            raise ValueError("For pure tensor inputs, `old_format` has to be passed.")
        return Tensor._wrap(_bf.convert_array(inpt._data, old_format, new))
    raise TypeError(
        "Input can either be a plain tensor or a bounding box tv_tensor, but got "
        f"{type(inpt)} instead."
    )


def _no_rotated(boxes: tv.BoundingBoxes) -> None:
    if tv.is_rotated_bounding_format(boxes.format):
        raise NotImplementedError(
            f"this kernel takes axis-aligned boxes only, got {boxes.format.value}"
        )


def clamp_bounding_boxes(inpt, format=None, canvas_size=None, clamping_mode="auto"):
    """Clamp boxes to their canvas: a ``BoundingBoxes`` (``"auto"`` takes its own
    ``clamping_mode``) or a plain tensor with ``format``, ``canvas_size`` and a
    ``clamping_mode`` (``"soft"``, ``"hard"`` or None). See :class:`ClampBoundingBoxes`."""
    if clamping_mode is not None and clamping_mode not in ("soft", "hard", "auto"):
        raise ValueError(f"clamping_mode must be soft, hard, auto or None, got {clamping_mode}")
    if isinstance(inpt, tv.BoundingBoxes):
        if format is not None or canvas_size is not None:
            raise ValueError(
                "For bounding box tv_tensor inputs, `format` and `canvas_size` must not be passed."
            )
        mode = inpt.clamping_mode if clamping_mode == "auto" else clamping_mode
        return _boxes_like(_rot.clamp_array(inpt._data, inpt.format, inpt.canvas_size, mode), inpt)
    if isinstance(inpt, Tensor) and not isinstance(inpt, tv.TVTensor):
        if format is None or canvas_size is None or clamping_mode == "auto":
            raise ValueError(
                "For pure tensor inputs, `format`, `canvas_size` and `clamping_mode` have to be "
                "passed."
            )
        return Tensor._wrap(_rot.clamp_array(inpt._data, format, tuple(canvas_size), clamping_mode))
    raise TypeError(
        "Input can either be a plain tensor or a bounding box tv_tensor, but got "
        f"{type(inpt)} instead."
    )


def _rewrap(out, like):
    if isinstance(like, (tv.Image, tv.Mask)):
        return type(like)._from_array(out._data)
    return out


def _plain(inpt):
    # Image/Mask data as a plain tensor for the v1 kernels (a 2-d mask gets a channel axis).
    a = inpt._data
    return Tensor._wrap(a[None] if isinstance(inpt, tv.Mask) and a.ndim == 2 else a), isinstance(
        inpt, tv.Mask
    ) and a.ndim == 2


def _unplain(out, like, squeezed: bool):
    arr = out._data[0] if squeezed else out._data
    return type(like)._from_array(arr)


# ---- geometry ------------------------------------------------------------------------------------
def _flip_rotated(boxes: tv.BoundingBoxes, horizontal: bool) -> tv.BoundingBoxes:
    out = _bf.flip_rotated(boxes._data, boxes.format, boxes.canvas_size, horizontal)
    return _boxes_like(out, boxes)


def horizontal_flip(inpt):
    if isinstance(inpt, tv.BoundingBoxes) and tv.is_rotated_bounding_format(inpt.format):
        return _flip_rotated(inpt, horizontal=True)
    if isinstance(inpt, tv.BoundingBoxes):
        w = inpt.canvas_size[1]

        def flip(b):
            xp = get_array_module(b)
            return xp.stack([w - b[..., 2], b[..., 1], w - b[..., 0], b[..., 3]], axis=-1)

        return _box_op(inpt, flip)
    if isinstance(inpt, tv.KeyPoints):
        return _kp.horizontal_flip(inpt)
    if isinstance(inpt, (tv.Image, tv.Mask)):
        return type(inpt)._from_array(inpt._data[..., ::-1].copy())
    return _v1.hflip(inpt)


def vertical_flip(inpt):
    if isinstance(inpt, tv.BoundingBoxes) and tv.is_rotated_bounding_format(inpt.format):
        return _flip_rotated(inpt, horizontal=False)
    if isinstance(inpt, tv.BoundingBoxes):
        h = inpt.canvas_size[0]

        def flip(b):
            xp = get_array_module(b)
            return xp.stack([b[..., 0], h - b[..., 3], b[..., 2], h - b[..., 1]], axis=-1)

        return _box_op(inpt, flip)
    if isinstance(inpt, tv.KeyPoints):
        return _kp.vertical_flip(inpt)
    if isinstance(inpt, (tv.Image, tv.Mask)):
        return type(inpt)._from_array(inpt._data[..., ::-1, :].copy())
    return _v1.vflip(inpt)


hflip = horizontal_flip
vflip = vertical_flip


def resize(inpt, size, interpolation=InterpolationMode.BILINEAR, max_size=None, antialias=True):
    if isinstance(inpt, tv.BoundingBoxes):
        h, w = inpt.canvas_size
        nh, nw = _output_size(h, w, size, max_size)
        a = inpt._data
        if _rotated(inpt):
            out = _rot.resize(a, inpt.format, (h, w), (nh, nw), inpt.clamping_mode)
            return _boxes_like(out, inpt, (nh, nw))
        xp = get_array_module(a)
        ratios = xp.asarray(np.array([nw / w, nh / h, nw / w, nh / h], np.float64))
        out = (a * ratios).astype(a.dtype)
        return _boxes_like(out, inpt, (nh, nw))
    if isinstance(inpt, tv.KeyPoints):
        h, w = inpt.canvas_size
        return _kp.resize(inpt, tuple(_output_size(h, w, size, max_size)))
    if isinstance(inpt, tv.Mask):
        t, squeezed = _plain(inpt)
        out = _v1.resize(t, size, InterpolationMode.NEAREST, max_size, antialias=False)
        return _unplain(out, inpt, squeezed)
    if isinstance(inpt, tv.Image):
        t, _ = _plain(inpt)
        return _rewrap(_v1.resize(t, size, interpolation, max_size, antialias), inpt)
    return _v1.resize(inpt, size, interpolation, max_size, antialias)


def crop(inpt, top: int, left: int, height: int, width: int):
    if _rotated(inpt):
        out = _rot.crop(inpt._data, inpt.format, top, left, height, width, inpt.clamping_mode)
        return _boxes_like(out, inpt, (height, width))
    if isinstance(inpt, tv.BoundingBoxes):

        def shift(b):
            return b - get_array_module(b).asarray(np.array([left, top, left, top], b.dtype))

        return _box_op(inpt, shift, canvas_size=(height, width), clamp=True)
    if isinstance(inpt, tv.KeyPoints):
        return _kp.crop(inpt, top, left, height, width)
    if isinstance(inpt, (tv.Image, tv.Mask)):
        t, squeezed = _plain(inpt)
        return _unplain(_v1.crop(t, top, left, height, width), inpt, squeezed)
    return _v1.crop(inpt, top, left, height, width)


def center_crop(inpt, output_size):
    if isinstance(inpt, (tv.BoundingBoxes, tv.KeyPoints)):
        th, tw = _pair(output_size, "output_size")
        h, w = inpt.canvas_size
        return crop(inpt, int(round((h - th) / 2.0)), int(round((w - tw) / 2.0)), th, tw)
    if isinstance(inpt, (tv.Image, tv.Mask)):
        t, squeezed = _plain(inpt)
        return _unplain(_v1.center_crop(t, output_size), inpt, squeezed)
    return _v1.center_crop(inpt, output_size)


def resized_crop(
    inpt,
    top: int,
    left: int,
    height: int,
    width: int,
    size,
    interpolation=InterpolationMode.BILINEAR,
    antialias=True,
):
    return resize(crop(inpt, top, left, height, width), size, interpolation, antialias=antialias)


def pad(inpt, padding, fill=0, padding_mode: str = "constant"):
    if isinstance(inpt, tv.BoundingBoxes):
        if padding_mode != "constant":  # torchvision's check, for axis-aligned and rotated boxes
            raise ValueError(f"Padding mode '{padding_mode}' is not supported with bounding boxes")
        left, top, right, bottom = _padding4(padding)
        h, w = inpt.canvas_size
        if _rotated(inpt):
            canvas = (h + top + bottom, w + left + right)
            out = _rot.pad(inpt._data, inpt.format, canvas, left, top, inpt.clamping_mode)
            return _boxes_like(out, inpt, canvas)

        def shift(b):
            return b + get_array_module(b).asarray(np.array([left, top, left, top], b.dtype))

        return _box_op(inpt, shift, canvas_size=(h + top + bottom, w + left + right), clamp=True)
    if isinstance(inpt, tv.KeyPoints):
        if padding_mode != "constant":
            raise ValueError(
                f"Padding mode '{padding_mode}' is not supported with KeyPoints (supported modes "
                "are constant)"
            )
        return _kp.pad(inpt, *_padding4(padding))
    if isinstance(inpt, (tv.Image, tv.Mask)):
        t, squeezed = _plain(inpt)
        return _unplain(_pad_tensor(t, padding, fill, padding_mode), inpt, squeezed)
    return (
        _pad_tensor(inpt, padding, fill, padding_mode)
        if isinstance(inpt, Tensor)
        else _v1.pad(inpt, padding, fill, padding_mode)
    )


def _pad_tensor(t, padding, fill, padding_mode: str):
    # v2 fills a tensor per channel (v1 takes one number): a canvas of the fill values with
    # the image placed in it
    per_channel = isinstance(fill, (tuple, list)) and len(fill) > 1
    p = _padding4(padding)
    if not per_channel or padding_mode != "constant" or min(p) < 0:
        return _v1.pad(t, padding, fill, padding_mode)
    a = t._data
    xp = get_array_module(a)
    c, h, w = a.shape[-3:]
    if len(fill) != c:
        raise ValueError(
            f"The number of elements in 'fill' does not match the number of channels of the "
            f"image ({len(fill)} != {c})"
        )
    left, top, right, bottom = p
    values = xp.asarray(np.asarray(fill, np.float64).astype(a.dtype)).reshape(c, 1, 1)
    out = xp.broadcast_to(values, a.shape[:-3] + (c, h + top + bottom, w + left + right)).copy()
    out[..., top : top + h, left : left + w] = a
    return Tensor._wrap(out)


__all__ += ["get_dimensions", "hflip", "vflip"]


# affine and rotate move bounding boxes and masks too (v1's take images only)
from ._affine import affine, rotate  # noqa: E402,F401
from ._keypoints import clamp_keypoints, sanitize_keypoints  # noqa: E402,F401
from ._warp import elastic, elastic_transform, perspective  # noqa: E402,F401

__all__ += ["elastic", "perspective", "clamp_keypoints", "sanitize_keypoints"]

# v2-only kernels, then torchvision's per-type kernel names (resize_image, resize_mask, ...)
from ._kernels import *  # noqa: E402,F403
from ._kernels import __all__ as _kernels_all  # noqa: E402

__all__ += _kernels_all

from ._kernel_names import *  # noqa: E402,F403
from ._kernel_names import __all__ as _names_all  # noqa: E402

__all__ += _names_all

# user kernels for their own TVTensor types, and Video in, Video out (_register.py): every
# public functional above becomes its dispatching wrapper
from . import _register  # noqa: E402

_register.install(globals(), [n for n in __all__ if n not in _names_all])
register_kernel = _register.register_kernel
__all__ += ["register_kernel"]
