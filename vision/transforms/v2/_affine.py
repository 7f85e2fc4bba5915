"""v2's ``affine`` and ``rotate`` for bounding boxes and masks (images go to v1's kernels).

A box moves as torchvision moves it: its four corners go through the forward affine map
about the canvas centre (or ``center``), the new box is their bounding box, clamped to the
canvas. Rotated boxes move by their four corners (see ``_rotated.py``).
``rotate(expand=True)`` grows the canvas as the image's and shifts the boxes into it.
Masks are warped as images with nearest sampling.
"""

from __future__ import annotations

import math

import numpy as np

from ember.backend.device import get_array_module

from ... import tv_tensors as tv
from .. import _geometry
from .. import functional as _v1
from .._functional_geometry import _shear_pair
from ..functional import InterpolationMode
from . import _keypoints as _kp


def forward_affine_matrix(center, angle: float, translate, scale: float, shear) -> list[float]:
    """``T * C * R * S * Sh * C^-1`` (6 numbers): where a point of the input goes (the
    inverse of :func:`~ember.vision.transforms._geometry.inverse_affine_matrix`)."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [a * scale, b * scale, 0.0, c * scale, d * scale, 0.0]
    m[2] += m[0] * (-cx) + m[1] * (-cy) + cx + tx
    m[5] += m[3] * (-cx) + m[4] * (-cy) + cy + ty
    return m


def _affine_boxes(boxes: tv.BoundingBoxes, angle, translate, scale, shear, center, expand):
    from .functional import _box_op

    h, w = boxes.canvas_size
    c = [w * 0.5, h * 0.5] if center is None else [float(v) for v in center]
    m = forward_affine_matrix(c, angle, [float(t) for t in translate], scale, shear)
    canvas = (h, w)
    shift = np.zeros(2)
    if expand:
        corners = np.array([[0.0, 0.0, 1.0], [0.0, h, 1.0], [w, h, 1.0], [w, 0.0, 1.0]])
        shift = (corners @ np.array(m).reshape(2, 3).T).min(0)
        inv = _geometry.inverse_affine_matrix(c, angle, translate, scale, shear)
        nw, nh = _geometry.affine_output_size(inv, w, h)
        canvas = (nh, nw)

    if tv.is_rotated_bounding_format(boxes.format):
        from . import _rotated
        from .functional import _boxes_like

        a = boxes._data
        out = _rotated.affine(a, boxes.format, m, shift, canvas, boxes.clamping_mode)
        return _boxes_like(out, boxes, canvas)

    def move(b):
        xp = get_array_module(b)
        mt = xp.asarray(np.array(m, b.dtype).reshape(2, 3).T)
        pts = b[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)  # each box's four corners
        pts = xp.concatenate([pts, xp.ones((pts.shape[0], 1), b.dtype)], axis=-1) @ mt
        pts = pts.reshape(-1, 4, 2)
        out = xp.concatenate([pts.min(1), pts.max(1)], axis=-1)
        return out - xp.asarray(np.tile(shift, 2).astype(b.dtype))

    return _box_op(boxes, move, canvas_size=canvas, clamp=True)


def _warp_mask(mask: tv.Mask, fn):
    from .functional import _plain, _unplain

    t, squeezed = _plain(mask)
    return _unplain(fn(t), mask, squeezed)


def affine(
    inpt,
    angle: float,
    translate,
    scale: float,
    shear,
    interpolation=InterpolationMode.NEAREST,
    fill=None,
    center=None,
):
    """v1's ``affine`` for images; bounding boxes and masks (nearest) move alike."""
    if isinstance(inpt, tv.BoundingBoxes):
        if scale <= 0.0:
            raise ValueError("Argument scale should be positive")
        return _affine_boxes(inpt, angle, translate, scale, _shear_pair(shear), center, False)
    if isinstance(inpt, tv.KeyPoints):
        if scale <= 0.0:
            raise ValueError("Argument scale should be positive")
        return _kp.affine(inpt, angle, translate, scale, _shear_pair(shear), center, False)
    if isinstance(inpt, tv.Mask):
        return _warp_mask(
            inpt,
            lambda t: _v1.affine(
                t, angle, translate, scale, shear, InterpolationMode.NEAREST, fill, center
            ),
        )
    if isinstance(inpt, tv.Image):
        img = inpt.as_subclass_of_tensor()
        out = _v1.affine(img, angle, translate, scale, shear, interpolation, fill, center)
        return tv.Image._from_array(out._data)
    return _v1.affine(inpt, angle, translate, scale, shear, interpolation, fill, center)


def rotate(
    inpt,
    angle: float,
    interpolation=InterpolationMode.NEAREST,
    expand: bool = False,
    center=None,
    fill=None,
):
    """v1's ``rotate`` for images; bounding boxes and masks (nearest) move alike."""
    if isinstance(inpt, tv.BoundingBoxes):
        return _affine_boxes(inpt, -angle, [0.0, 0.0], 1.0, [0.0, 0.0], center, expand)
    if isinstance(inpt, tv.KeyPoints):
        return _kp.affine(inpt, -angle, [0.0, 0.0], 1.0, [0.0, 0.0], center, expand)
    if isinstance(inpt, tv.Mask):
        return _warp_mask(
            inpt, lambda t: _v1.rotate(t, angle, InterpolationMode.NEAREST, expand, center, fill)
        )
    if isinstance(inpt, tv.Image):
        out = _v1.rotate(inpt.as_subclass_of_tensor(), angle, interpolation, expand, center, fill)
        return tv.Image._from_array(out._data)
    return _v1.rotate(inpt, angle, interpolation, expand, center, fill)
