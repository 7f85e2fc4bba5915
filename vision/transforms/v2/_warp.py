"""v2's warps on every kind of leaf: ``perspective`` and ``elastic`` for images, bounding
boxes and masks, and the random transforms that draw them (``RandomPerspective``,
``ElasticTransform``).

Boxes move as torchvision moves them: a perspective sends each box's four corners through the
inverse of the image's map and takes their bounding box; an elastic warp looks each corner up
in the approximate inverse grid ``identity - displacement`` (torchvision's approximation) and
takes the bounding box of the four looked-up points. Rotated boxes keep their corners (a
perspective's parallelogram made a rectangle) or, in an elastic warp, move their centre only.
All clamp to the canvas by the boxes' ``clamping_mode``. Masks warp as images with nearest
sampling.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ember.backend.device import get_array_module
from ember.tensor import Tensor

from ... import tv_tensors as tv
from .. import _geometry
from .. import functional as _v1
from .. import transforms as _v1t
from .._functional_pil import is_pil
from ..functional import InterpolationMode
from . import _keypoints as _kp
from . import _rotated
from ._transform import Transform

__all__ = ["perspective", "elastic", "elastic_transform", "RandomPerspective", "ElasticTransform"]


def _coefficients(startpoints, endpoints, coefficients) -> list[float]:
    if coefficients is not None:
        if startpoints is not None and endpoints is not None:
            raise ValueError(
                "The startpoints/endpoints and the coefficients shouldn't be defined concurrently."
            )
        if len(coefficients) != 8:
            raise ValueError("Argument coefficients should have 8 float values")
        return [float(c) for c in coefficients]
    if startpoints is not None and endpoints is not None:
        return _geometry.perspective_coeffs(startpoints, endpoints)
    raise ValueError(
        "Either the startpoints/endpoints or the coefficients must have non `None` values."
    )


def _boxes_as_xyxy(boxes: tv.BoundingBoxes):
    from .functional import _no_rotated, _to_xyxy

    _no_rotated(boxes)
    a = boxes._data
    xp = get_array_module(a)
    # integer boxes stay integer in XYXY (torchvision converts with ``.to(dtype)``: truncation)
    return _to_xyxy(a, boxes.format, xp).astype(a.dtype).reshape(-1, 4), xp


def _boxes_back(out, boxes: tv.BoundingBoxes, xp):
    """Clamp XYXY ``out`` to the canvas, return it in the boxes' format and dtype."""
    from .functional import _boxes_like, _from_xyxy

    h, w = boxes.canvas_size
    out = out.astype(np.float32) if out.dtype.kind != "f" else out.copy()
    if boxes.clamping_mode is not None:
        out[:, 0::2] = xp.clip(out[:, 0::2], 0, w)
        out[:, 1::2] = xp.clip(out[:, 1::2], 0, h)
    out = _from_xyxy(out, boxes.format, xp).reshape(boxes._data.shape)
    # torchvision casts back with ``.to(dtype)``: integer boxes are truncated, not rounded
    # (a corner landing within a float32 ulp of an integer may truncate one pixel apart from
    # torch, whose small-matmul rounding depends on its CPU kernel)
    return _boxes_like(out.astype(boxes._data.dtype), boxes)


def _inverse_perspective(c: list[float], dtype, what: str):
    """torchvision's ``theta1`` ``(2, 3)`` and ``theta2`` ``(2, 3)``: ``c`` maps output pixels
    to input pixels, points move by its inverse (``theta1 @ p / theta2 @ p``)."""
    denom = c[0] * c[4] - c[1] * c[3]
    if denom == 0:
        raise RuntimeError(
            f"Provided perspective_coeffs {c} can not be inverted to transform {what}. "
            f"Denominator is zero, denom={denom}"
        )
    inv = [
        (c[4] - c[5] * c[7]) / denom,
        (-c[1] + c[2] * c[7]) / denom,
        (c[1] * c[5] - c[2] * c[4]) / denom,
        (-c[3] + c[5] * c[6]) / denom,
        (c[0] - c[2] * c[6]) / denom,
        (-c[0] * c[5] + c[2] * c[3]) / denom,
        (-c[4] * c[6] + c[3] * c[7]) / denom,
        (-c[0] * c[7] + c[1] * c[6]) / denom,
    ]
    theta1 = np.array([inv[0:3], inv[3:6]], dtype)
    return theta1, np.array([[inv[6], inv[7], 1.0]] * 2, dtype)


def _perspective_boxes(boxes: tv.BoundingBoxes, c: list[float]) -> tv.BoundingBoxes:
    if boxes._data.size == 0:
        return boxes
    if tv.is_rotated_bounding_format(boxes.format):
        from .functional import _boxes_like

        a = boxes._data
        theta1, theta2 = _inverse_perspective(c, a.dtype, "bounding boxes")
        out = _rotated.perspective(
            a, boxes.format, theta1, theta2, boxes.canvas_size, boxes.clamping_mode
        )
        return _boxes_like(out, boxes)
    b, xp = _boxes_as_xyxy(boxes)
    dtype = b.dtype if b.dtype.kind == "f" else np.dtype(np.float32)
    theta1, theta2 = (xp.asarray(t) for t in _inverse_perspective(c, dtype, "bounding boxes"))
    pts = b[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2).astype(dtype)
    pts = xp.concatenate([pts, xp.ones((pts.shape[0], 1), dtype)], axis=-1)
    moved = ((pts @ theta1.T) / (pts @ theta2.T)).reshape(-1, 4, 2)
    return _boxes_back(xp.concatenate([moved.min(1), moved.max(1)], axis=-1), boxes, xp)


def _elastic_boxes(boxes: tv.BoundingBoxes, displacement: Tensor) -> tv.BoundingBoxes:
    h, w = boxes.canvas_size
    if tuple(displacement.shape) != (1, h, w, 2):
        raise ValueError(
            f"Argument displacement shape should be {(1, h, w, 2)}, "
            f"but given {tuple(displacement.shape)}"
        )
    if boxes._data.size == 0:
        return boxes
    rotated = tv.is_rotated_bounding_format(boxes.format)
    a = boxes._data
    xp = get_array_module(a)
    dtype = a.dtype if a.dtype.kind == "f" else np.dtype(np.float32)
    xs = np.linspace((-w + 1) / w, (w - 1) / w, w, dtype=dtype)
    ys = np.linspace((-h + 1) / h, (h - 1) / h, h, dtype=dtype)
    ident = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None]), -1)
    inv_grid = xp.asarray(ident) - xp.asarray(displacement.numpy()[0].astype(dtype))
    if rotated:
        from .functional import _boxes_like

        out = _rotated.elastic(a, boxes.format, inv_grid, (h, w), boxes.clamping_mode)
        return _boxes_like(out, boxes)
    b, xp = _boxes_as_xyxy(boxes)
    pts = b[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)
    if pts.dtype.kind == "f":
        pts = xp.ceil(pts)
    ix = xp.clip(pts[:, 0].astype(np.int64), 0, w - 1)
    iy = xp.clip(pts[:, 1].astype(np.int64), 0, h - 1)
    size = xp.asarray(np.array([w, h], dtype))
    moved = ((inv_grid[iy, ix] + 1) * (0.5 * size) - 0.5).reshape(-1, 4, 2)
    out = xp.concatenate([moved.min(1), moved.max(1)], axis=-1).astype(b.dtype)
    return _boxes_back(out, boxes, xp)


def _on_mask(mask: tv.Mask, fn):
    from .functional import _plain, _unplain

    t, squeezed = _plain(mask)
    return _unplain(fn(t), mask, squeezed)


def perspective(
    inpt,
    startpoints,
    endpoints,
    interpolation=InterpolationMode.BILINEAR,
    fill=None,
    coefficients=None,
):
    """Warp ``inpt`` so that ``endpoints`` land on ``startpoints`` (or by the eight
    ``coefficients``): images with ``interpolation``, masks with nearest, bounding boxes by
    their corners (torchvision's ``v2.functional.perspective``)."""
    c = _coefficients(startpoints, endpoints, coefficients)
    if isinstance(inpt, tv.BoundingBoxes):
        return _perspective_boxes(inpt, c)
    if isinstance(inpt, tv.KeyPoints):
        return _kp.perspective(inpt, c)
    if isinstance(inpt, tv.Mask):
        return _on_mask(inpt, lambda t: _perspective_image(t, c, InterpolationMode.NEAREST, fill))
    if isinstance(inpt, tv.Image):
        out = _perspective_image(inpt.as_subclass_of_tensor(), c, interpolation, fill)
        return tv.Image._from_array(out._data)
    return _perspective_image(inpt, c, interpolation, fill)


def _perspective_image(img, c, interpolation, fill):
    if is_pil(img):
        from .._functional_pil import perspective as pil_perspective

        return pil_perspective(img, c, _v1._mode(interpolation), fill)
    return _v1._wrap(_geometry.warp_perspective(_v1._arr(img), c, _v1._mode(interpolation), fill))


def elastic(inpt, displacement, interpolation=InterpolationMode.BILINEAR, fill=None):
    """Move each pixel by ``displacement`` (``(1, H, W, 2)``): images with ``interpolation``,
    masks with nearest, bounding boxes by their looked-up corners (torchvision's
    ``v2.functional.elastic``)."""
    if not isinstance(displacement, Tensor):
        raise TypeError("Argument displacement should be a Tensor")
    if isinstance(inpt, tv.BoundingBoxes):
        return _elastic_boxes(inpt, displacement)
    if isinstance(inpt, tv.KeyPoints):
        return _kp.elastic(inpt, displacement)
    if isinstance(inpt, tv.Mask):
        return _on_mask(
            inpt,
            lambda t: _v1.elastic_transform(t, displacement, InterpolationMode.NEAREST, fill),
        )
    if isinstance(inpt, tv.Image):
        out = _v1.elastic_transform(inpt.as_subclass_of_tensor(), displacement, interpolation, fill)
        return tv.Image._from_array(out._data)
    return _v1.elastic_transform(inpt, displacement, interpolation, fill)


elastic_transform = elastic


def _image_fill(inpt, fill):
    # a number fills every channel of a tensor image (v1's RandomPerspective does the same)
    if is_pil(inpt) or fill is None:
        return fill
    fill = [float(f) for f in (fill if isinstance(fill, (list, tuple)) else [fill])]
    n = int(inpt.shape[-3]) if inpt.ndim >= 3 else 1
    return fill * n if len(fill) == 1 else fill


class RandomPerspective(Transform):
    """Warp a sample by a random perspective with probability ``p``: images, bounding boxes
    (their moved corners' bounding box, clamped) and masks (nearest) alike.

    Takes the arguments of :class:`~ember.vision.transforms.RandomPerspective`; the draws are
    torchvision's, in its order.
    """

    def __init__(
        self,
        distortion_scale: float = 0.5,
        p: float = 0.5,
        interpolation=InterpolationMode.BILINEAR,
        fill=0,
    ) -> None:
        self._impl = _v1t.RandomPerspective(distortion_scale, p, interpolation, fill)

    def __getattr__(self, name: str):
        if name == "_impl":
            raise AttributeError(name)
        return getattr(self._impl, name)

    def __repr__(self) -> str:
        return repr(self._impl)

    def _get_params(self, image) -> dict[str, Any]:
        if _v1t._rand() >= self._impl.p:
            return {"apply": False}
        h, w = _size(image)
        start, end = self._impl.get_params(w, h, self._impl.distortion_scale)
        return {"apply": True, "coefficients": _geometry.perspective_coeffs(start, end)}

    def _needs_transform(self, params):
        return params["apply"]

    def _transform(self, inpt, kind, params):
        t = self._impl
        fill = 0 if kind in ("mask", "keypoints") else _image_fill(inpt, t.fill)
        return perspective(inpt, None, None, t.interpolation, fill, params["coefficients"])


def _size(image) -> tuple[int, int]:
    from .functional import get_size

    h, w = get_size(image)
    return h, w


class ElasticTransform(Transform):
    """Morph a sample by random displacement fields: images, bounding boxes (see
    :func:`elastic`) and masks (nearest) alike.

    Takes the arguments of :class:`~ember.vision.transforms.ElasticTransform`; the draws are
    torchvision's, in its order.
    """

    def __init__(
        self, alpha=50.0, sigma=5.0, interpolation=InterpolationMode.BILINEAR, fill=0
    ) -> None:
        self._impl = _v1t.ElasticTransform(alpha, sigma, interpolation, fill)

    def __getattr__(self, name: str):
        if name == "_impl":
            raise AttributeError(name)
        return getattr(self._impl, name)

    def __repr__(self) -> str:
        return repr(self._impl)

    def _get_params(self, image) -> dict[str, Any]:
        t = self._impl
        return {"displacement": t.get_params(t.alpha, t.sigma, list(_size(image)))}

    def _transform(self, inpt, kind, params):
        t = self._impl
        fill = 0 if kind in ("mask", "keypoints") else _image_fill(inpt, t.fill)
        return elastic(inpt, params["displacement"], t.interpolation, fill)
