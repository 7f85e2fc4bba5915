"""Bounding-box format conversions of ``v2.functional.convert_bounding_box_format``, rotated
formats included (``XYWHR``, ``CXCYWHR``: an angle ``r`` in degrees, counter-clockwise on the
image; ``XYXYXYXY``: the four corners from the top-left one, then top-right, bottom-right,
bottom-left). Axis-aligned formats go through ``XYXY``, rotated ones through ``XYWHR``, as in
torchvision; NumPy / CuPy arrays in, arrays out."""

from __future__ import annotations

import numpy as np

from ember.backend.device import get_array_module

from ... import tv_tensors as tv

_F = tv.BoundingBoxFormat


def _as_format(fmt) -> tv.BoundingBoxFormat:
    if isinstance(fmt, tv.BoundingBoxFormat):
        return fmt
    try:
        return tv.BoundingBoxFormat[str(fmt).upper()]
    except KeyError:
        raise ValueError(
            f"unknown bounding box format {fmt!r}; use one of "
            f"{[f.name for f in tv.BoundingBoxFormat]}"
        ) from None


def _half(v, xp):
    # integer boxes halve with floor division, as torchvision's div(rounding_mode="floor")
    return xp.abs(v / 2) if v.dtype.kind == "f" else xp.abs(-v // 2)


def _to_xyxy(a, fmt, xp):
    if fmt == _F.XYXY:
        return a
    if fmt == _F.XYWH:
        x, y, w, h = (a[..., i] for i in range(4))
        return xp.stack([x, y, x + w, y + h], axis=-1)
    cx, cy, w, h = (a[..., i] for i in range(4))
    hw, hh = _half(w, xp), _half(h, xp)
    return xp.stack([cx - hw, cy - hh, cx - hw + w, cy - hh + h], axis=-1)


def _from_xyxy(a, fmt, xp):
    if fmt == _F.XYXY:
        return a
    x1, y1, x2, y2 = (a[..., i] for i in range(4))
    if fmt == _F.XYWH:
        return xp.stack([x1, y1, x2 - x1, y2 - y1], axis=-1)
    if a.dtype.kind == "f":
        return xp.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=-1)
    return xp.stack([(x1 + x2) // 2, (y1 + y2) // 2, x2 - x1, y2 - y1], axis=-1)


def _cos_sin(r, xp):
    rad = r * (np.pi / 180.0)
    return xp.cos(rad), xp.sin(rad)


def _to_xywhr(a, fmt, xp):
    if fmt == _F.XYWHR:
        return a
    if fmt == _F.CXCYWHR:
        cx, cy, w, h, r = (a[..., i] for i in range(5))
        cos, sin = _cos_sin(r, xp)
        hw, hh = _half(w, xp), _half(h, xp)
        x1 = cx - hw * cos - hh * sin
        y1 = cy + hw * sin - hh * cos
        return xp.stack([x1, y1, w, h, r], axis=-1).astype(a.dtype)
    # XYXYXYXY: the angle of the top edge, its length and the right edge's
    f = a if a.dtype in (np.float32, np.float64) else a.astype(np.float32)
    x1, y1, x2, y2, x3, y3 = (f[..., i] for i in range(6))
    r = xp.arctan2(y1 - y2, x2 - x1) * (180.0 / np.pi)
    w = xp.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
    h = xp.sqrt((x3 - x2) ** 2 + (y3 - y2) ** 2)
    return xp.stack([x1, y1, w, h, r], axis=-1).astype(a.dtype)


def _from_xywhr(a, fmt, xp):
    if fmt == _F.XYWHR:
        return a
    x1, y1, w, h, r = (a[..., i] for i in range(5))
    cos, sin = _cos_sin(r, xp)
    if fmt == _F.CXCYWHR:
        hw, hh = _half(w, xp), _half(h, xp)
        cx = x1 + hw * cos + hh * sin
        cy = y1 - hw * sin + hh * cos
        return xp.stack([cx, cy, w, h, r], axis=-1).astype(a.dtype)
    corners = [
        x1,
        y1,
        x1 + w * cos,
        y1 - w * sin,
        x1 + w * cos + h * sin,
        y1 - w * sin + h * cos,
        x1 + h * sin,
        y1 + h * cos,
    ]
    return xp.stack(corners, axis=-1).astype(a.dtype)


def convert_array(a, old, new):
    """``a`` (``(..., K)``) from box format ``old`` to ``new``."""
    old, new = _as_format(old), _as_format(new)
    if old == new:
        return a
    if tv.is_rotated_bounding_format(old) != tv.is_rotated_bounding_format(new):
        raise ValueError("Cannot convert between rotated and unrotated bounding boxes.")
    want = tv._BOX_WIDTH[old.value]
    if a.shape[-1] != want:
        raise ValueError(
            f"boxes in format {old.value} have {want} values each, got shape {tuple(a.shape)}"
        )
    xp = get_array_module(a)
    if tv.is_rotated_bounding_format(old):
        return _from_xywhr(_to_xywhr(a, old, xp), new, xp)
    return _from_xyxy(_to_xyxy(a, old, xp), new, xp).astype(a.dtype)


def flip_rotated(a, fmt, canvas_size, horizontal: bool):
    """Rotated boxes ``a`` mirrored left-right (``horizontal``) or upside down on a canvas
    ``(H, W)``, as torchvision's flips: the corner order of ``XYXYXYXY`` is kept (top-left
    first), ``XYWHR`` moves its anchor to the mirrored top-right corner and negates the angle
    (``180 - r`` upside down)."""
    fmt = _as_format(fmt)
    xp = get_array_module(a)
    h, w = canvas_size
    out = a.copy()
    i, size = (0, w) if horizontal else (1, h)  # the coordinate that flips
    if fmt == _F.XYXYXYXY:
        out[..., i::2] = size - a[..., i::2]
        return out[..., [2, 3, 0, 1, 6, 7, 4, 5]]
    r = a[..., 4]
    if fmt == _F.XYWHR:
        cos, sin = _cos_sin(r, xp)
        if horizontal:
            out[..., 0] = w - (a[..., 0] + a[..., 2] * cos)
            out[..., 1] = a[..., 1] - a[..., 2] * sin
        else:
            out[..., 1] = h - (a[..., 1] - a[..., 2] * sin)
            out[..., 0] = a[..., 0] + a[..., 2] * cos
    else:  # CXCYWHR
        out[..., i] = size - a[..., i]
    out[..., 4] = -r if horizontal else 180 - r
    return out
