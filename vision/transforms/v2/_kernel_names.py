"""torchvision's per-type kernel names of ``v2.functional``: ``<op>_image``, ``<op>_video``,
``<op>_mask`` and ``<op>_bounding_boxes`` (see ``_kernels.py`` for what each kind takes).
They are thin layers over the dispatchers of ``v2.functional``, built here in one place."""

from __future__ import annotations

from ember.tensor import Tensor

from ... import tv_tensors as tv
from . import functional as F

_IMAGE_OPS = [
    "adjust_brightness", "adjust_contrast", "adjust_gamma", "adjust_hue", "adjust_saturation",
    "adjust_sharpness", "affine", "autocontrast", "center_crop", "crop", "elastic", "equalize",
    "erase", "five_crop", "gaussian_blur", "gaussian_noise", "get_dimensions",
    "get_num_channels", "get_size", "horizontal_flip", "invert", "jpeg", "normalize", "pad",
    "permute_channels", "perspective", "posterize", "resize", "resized_crop", "rotate",
    "solarize", "ten_crop", "to_dtype", "vertical_flip",
]  # fmt: skip
_IMAGE_ONLY = ["rgb_to_grayscale", "grayscale_to_rgb"]
_VIDEO_ONLY = ["uniform_temporal_subsample", "get_num_frames"]
_MASK_OPS = [
    "affine", "center_crop", "crop", "elastic", "horizontal_flip", "pad", "perspective",
    "resize", "resized_crop", "rotate", "vertical_flip", "get_size",
]  # fmt: skip

__all__: list[str] = []


def _plain(out):
    if isinstance(out, (list, tuple)):
        return type(out)(_plain(o) for o in out)
    return Tensor._wrap(out._data) if isinstance(out, tv.TVTensor) else out


def _image_kernel(name: str):
    fn = getattr(F, name)

    def kernel(image, *args, **kwargs):
        return _plain(fn(_plain(image), *args, **kwargs))

    kernel.__name__ = kernel.__qualname__ = f"{name}_image"
    kernel.__doc__ = f"``v2.functional.{name}`` on a plain tensor image (or PIL image)."
    return kernel


def _video_kernel(name: str):
    fn = getattr(F, name)

    def kernel(video, *args, **kwargs):
        return _plain(fn(_plain(video), *args, **kwargs))

    kernel.__name__ = kernel.__qualname__ = f"{name}_video"
    kernel.__doc__ = f"``v2.functional.{name}`` on a plain video tensor ``(..., T, C, H, W)``."
    return kernel


def _mask_kernel(name: str):
    fn = getattr(F, name)

    def kernel(mask, *args, **kwargs):
        return _plain(fn(tv.Mask(mask), *args, **kwargs))

    kernel.__name__ = kernel.__qualname__ = f"{name}_mask"
    kernel.__doc__ = f"``v2.functional.{name}`` on a plain mask tensor (nearest sampling)."
    return kernel


for _name in _IMAGE_OPS + _IMAGE_ONLY:
    globals()[f"{_name}_image"] = _image_kernel(_name)
    __all__.append(f"{_name}_image")
for _name in _IMAGE_OPS + _VIDEO_ONLY:
    globals()[f"{_name}_video"] = _video_kernel(_name)
    __all__.append(f"{_name}_video")
for _name in _MASK_OPS:
    globals()[f"{_name}_mask"] = _mask_kernel(_name)
    __all__.append(f"{_name}_mask")
del _name


def _boxes(bounding_boxes, format, canvas_size, clamping_mode="soft") -> tv.BoundingBoxes:
    return tv.BoundingBoxes(
        bounding_boxes, format=format, canvas_size=canvas_size, clamping_mode=clamping_mode
    )


def _with_canvas(out: tv.BoundingBoxes):
    return Tensor._wrap(out._data), tuple(out.canvas_size)


def horizontal_flip_bounding_boxes(bounding_boxes, format, canvas_size):
    """Flip boxes left to right on a ``canvas_size`` ``(H, W)`` canvas."""
    return _plain(F.horizontal_flip(_boxes(bounding_boxes, format, canvas_size)))


def vertical_flip_bounding_boxes(bounding_boxes, format, canvas_size):
    """Flip boxes upside down on a ``canvas_size`` ``(H, W)`` canvas."""
    return _plain(F.vertical_flip(_boxes(bounding_boxes, format, canvas_size)))


def resize_bounding_boxes(
    bounding_boxes,
    canvas_size,
    size,
    max_size=None,
    format=tv.BoundingBoxFormat.XYXY,
    clamping_mode="soft",
):
    """Scale boxes with their canvas; returns ``(boxes, new canvas_size)``."""
    b = _boxes(bounding_boxes, format, canvas_size, clamping_mode)
    return _with_canvas(F.resize(b, size, max_size=max_size))


def affine_bounding_boxes(
    bounding_boxes,
    format,
    canvas_size,
    angle,
    translate,
    scale,
    shear,
    center=None,
    clamping_mode="soft",
):
    """Move boxes by an affine map (their moved corners' bounding box, clamped)."""
    b = _boxes(bounding_boxes, format, canvas_size, clamping_mode)
    return _plain(F.affine(b, angle, translate, scale, shear, center=center))


def rotate_bounding_boxes(
    bounding_boxes, format, canvas_size, angle, expand=False, center=None, clamping_mode="soft"
):
    """Rotate boxes; returns ``(boxes, new canvas_size)`` (it grows with ``expand``)."""
    b = _boxes(bounding_boxes, format, canvas_size, clamping_mode)
    return _with_canvas(F.rotate(b, angle, expand=expand, center=center))


def pad_bounding_boxes(
    bounding_boxes, format, canvas_size, padding, padding_mode="constant", clamping_mode="soft"
):
    """Shift boxes into a padded canvas; returns ``(boxes, new canvas_size)``."""
    if padding_mode not in ("constant",):
        raise ValueError(f"Padding mode '{padding_mode}' is not supported with bounding boxes")
    b = _boxes(bounding_boxes, format, canvas_size, clamping_mode)
    return _with_canvas(F.pad(b, padding))


def crop_bounding_boxes(bounding_boxes, format, top, left, height, width, clamping_mode="soft"):
    """Shift boxes into a crop (clamped); returns ``(boxes, (height, width))``."""
    b = _boxes(bounding_boxes, format, (height, width), clamping_mode)
    return _with_canvas(F.crop(b, top, left, height, width))


def center_crop_bounding_boxes(
    bounding_boxes, format, canvas_size, output_size, clamping_mode="soft"
):
    """Boxes in the centre crop of ``output_size``; returns ``(boxes, new canvas_size)``."""
    b = _boxes(bounding_boxes, format, canvas_size, clamping_mode)
    return _with_canvas(F.center_crop(b, output_size))


def resized_crop_bounding_boxes(
    bounding_boxes, format, top, left, height, width, size, clamping_mode="soft"
):
    """Crop then resize boxes; returns ``(boxes, new canvas_size)``."""
    b = _boxes(bounding_boxes, format, (height, width), clamping_mode)
    return _with_canvas(F.resized_crop(b, top, left, height, width, size))


def perspective_bounding_boxes(
    bounding_boxes,
    format,
    canvas_size,
    startpoints,
    endpoints,
    coefficients=None,
    clamping_mode="soft",
):
    """Move boxes by a perspective map (their moved corners' bounding box, clamped)."""
    b = _boxes(bounding_boxes, format, canvas_size, clamping_mode)
    return _plain(F.perspective(b, startpoints, endpoints, coefficients=coefficients))


def elastic_bounding_boxes(bounding_boxes, format, canvas_size, displacement, clamping_mode="soft"):
    """Move boxes by an elastic displacement field (see ``v2.functional.elastic``)."""
    b = _boxes(bounding_boxes, format, canvas_size, clamping_mode)
    return _plain(F.elastic(b, displacement))


def get_size_bounding_boxes(bounding_box: tv.BoundingBoxes) -> list[int]:
    """The boxes' ``canvas_size`` as ``[H, W]``."""
    return list(bounding_box.canvas_size)


__all__ += [
    "horizontal_flip_bounding_boxes",
    "vertical_flip_bounding_boxes",
    "resize_bounding_boxes",
    "affine_bounding_boxes",
    "rotate_bounding_boxes",
    "pad_bounding_boxes",
    "crop_bounding_boxes",
    "center_crop_bounding_boxes",
    "resized_crop_bounding_boxes",
    "perspective_bounding_boxes",
    "elastic_bounding_boxes",
    "get_size_bounding_boxes",
]


# ---- KeyPoints (..., 2) on plain tensors: the points, and the new canvas where torchvision's
# kernels return it
def _kp(keypoints, canvas_size) -> tv.KeyPoints:
    return tv.KeyPoints(keypoints, canvas_size=canvas_size)


def horizontal_flip_keypoints(keypoints, canvas_size):
    """Flip points left to right: ``x -> W - 1 - x``."""
    return _plain(F.horizontal_flip(_kp(keypoints, canvas_size)))


def vertical_flip_keypoints(keypoints, canvas_size):
    """Flip points upside down: ``y -> H - 1 - y``."""
    return _plain(F.vertical_flip(_kp(keypoints, canvas_size)))


def resize_keypoints(keypoints, size, canvas_size, max_size=None):
    """Scale points with their canvas; returns ``(points, new canvas_size)``."""
    return _with_canvas(F.resize(_kp(keypoints, canvas_size), size, max_size=max_size))


def affine_keypoints(keypoints, canvas_size, angle, translate, scale, shear, center=None):
    """Move points by an affine map; returns ``(points, canvas_size)``."""
    out = F.affine(_kp(keypoints, canvas_size), angle, translate, scale, shear, center=center)
    return _with_canvas(out)


def rotate_keypoints(keypoints, canvas_size, angle, expand=False, center=None):
    """Rotate points; returns ``(points, new canvas_size)``."""
    return _with_canvas(F.rotate(_kp(keypoints, canvas_size), angle, expand=expand, center=center))


def pad_keypoints(keypoints, canvas_size, padding, padding_mode="constant"):
    """Shift points into a padded canvas; returns ``(points, new canvas_size)``."""
    return _with_canvas(F.pad(_kp(keypoints, canvas_size), padding, padding_mode=padding_mode))


def crop_keypoints(keypoints, top, left, height, width):
    """Shift points into a crop (not clamped); returns ``(points, (height, width))``."""
    return _with_canvas(F.crop(_kp(keypoints, (height, width)), top, left, height, width))


def center_crop_keypoints(inpt, canvas_size, output_size):
    """Points in the centre crop of ``output_size``; returns ``(points, new canvas_size)``."""
    return _with_canvas(F.center_crop(_kp(inpt, canvas_size), output_size))


def resized_crop_keypoints(keypoints, top, left, height, width, size):
    """Crop then resize points; returns ``(points, new canvas_size)``."""
    kp = _kp(keypoints, (height, width))
    return _with_canvas(F.resized_crop(kp, top, left, height, width, size))


def perspective_keypoints(keypoints, canvas_size, startpoints, endpoints, coefficients=None):
    """Move points by a perspective map."""
    kp = _kp(keypoints, canvas_size)
    return _plain(F.perspective(kp, startpoints, endpoints, coefficients=coefficients))


def elastic_keypoints(keypoints, canvas_size, displacement):
    """Move points by an elastic displacement field (looked up in the inverse grid)."""
    return _plain(F.elastic(_kp(keypoints, canvas_size), displacement))


def get_size_keypoints(keypoints: tv.KeyPoints) -> list[int]:
    """The points' ``canvas_size`` as ``[H, W]``."""
    return list(keypoints.canvas_size)


__all__ += [
    "horizontal_flip_keypoints",
    "vertical_flip_keypoints",
    "resize_keypoints",
    "affine_keypoints",
    "rotate_keypoints",
    "pad_keypoints",
    "crop_keypoints",
    "center_crop_keypoints",
    "resized_crop_keypoints",
    "perspective_keypoints",
    "elastic_keypoints",
    "get_size_keypoints",
]
