"""Geometry ops of ``transforms.functional`` (re-exported there, where they keep their
``__module__``; same dispatch: PIL images to Pillow, tensors to the array kernels).

``resize, crop, center_crop, resized_crop, pad, hflip, vflip, five_crop, ten_crop, affine,
rotate`` and their argument helpers (``_output_size``, ``_pair``, ``_padding4``, ``_shear_pair``).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from . import _functional_pil as F_pil
from . import _functional_tensor as F_t
from . import _geometry
from .functional import InterpolationMode, _arr, _check, _mode, _wrap, get_dimensions


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
            # torchvision's words and type (a per-channel fill pads PIL images only)
            raise TypeError("Got inappropriate fill arg")
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


def perspective(
    img,
    startpoints: Sequence[Sequence[int]],
    endpoints: Sequence[Sequence[int]],
    interpolation=InterpolationMode.BILINEAR,
    fill=None,
):
    """Warp so that the four corners ``startpoints`` (top-left, top-right, bottom-right,
    bottom-left, as ``[x, y]``) move to ``endpoints``; ``fill`` for the pixels from outside."""
    coeffs = _geometry.perspective_coeffs(startpoints, endpoints)
    mode = _mode(interpolation)
    if not _check(img):
        return F_pil.perspective(img, coeffs, mode, fill)
    return _wrap(_geometry.warp_perspective(_arr(img), coeffs, mode, fill))


def elastic_transform(img, displacement, interpolation=InterpolationMode.BILINEAR, fill=None):
    """Move each pixel by ``displacement`` (``(1, H, W, 2)``, in grid_sample's [-1, 1] units;
    :meth:`~ember.vision.transforms.ElasticTransform.get_params` draws one)."""
    from ember.tensor import Tensor

    if not isinstance(displacement, Tensor):
        raise TypeError("Argument displacement should be a Tensor")
    mode = _mode(interpolation)
    if not _check(img):  # PIL: through a uint8 tensor, back in the image's mode
        from .functional import pil_to_tensor, to_pil_image

        out = elastic_transform(pil_to_tensor(img), displacement, interpolation, fill)
        return to_pil_image(out, mode=img.mode)
    _, h, w = get_dimensions(img)
    if tuple(displacement.shape) != (1, h, w, 2):
        raise ValueError(
            f"Argument displacement shape should be {(1, h, w, 2)}, got {tuple(displacement.shape)}"
        )
    return _wrap(_geometry.warp_displaced(_arr(img), displacement.numpy(), mode, fill))


# Documented, pickled and repr'd as ``ember.vision.transforms.functional``'s, as before the split.
for _fn in (
    resize,
    crop,
    center_crop,
    resized_crop,
    pad,
    hflip,
    vflip,
    five_crop,
    ten_crop,
    affine,
    rotate,
    perspective,
    elastic_transform,
):
    _fn.__module__ = "ember.vision.transforms.functional"
del _fn
