"""Rotated bounding boxes (``XYWHR``, ``CXCYWHR``, ``XYXYXYXY``) through v2's geometric
kernels, and the clamping of boxes to their canvas (``clamping_mode``).

Semantics are torchvision 0.28's: a rotated box moves as its four corners; a map that skews
them (resize with two ratios, affine with shear, perspective) gives a parallelogram, which is
made a rectangle again by keeping the two ends of its longest diagonal. Clamping a rotated box
keeps its angle: ``"soft"`` gives the smallest such box around the part inside the canvas
(corners may stay outside), ``"hard"`` the largest one inside both the box and the canvas,
``None`` leaves it. Arrays in (NumPy / CuPy), arrays out, float dtypes kept.
"""

from __future__ import annotations

import numpy as np

from ember.backend.device import get_array_module

from ... import tv_tensors as tv
from . import _box_formats as _bf

_F = tv.BoundingBoxFormat
_CORNERS = _F.XYXYXYXY


# ---- clamping --------------------------------------------------------------------------------
def _order_points(b, indices=None):
    """The corners of ``b`` ``(N, 8)`` rolled so that the left-most one (ties: the top one)
    comes first; ``indices`` reapplies an earlier roll. Returns ``(indices, rolled)``."""
    xp = get_array_module(b)
    if indices is None:
        x, y = b[:, 0::2], b[:, 1::2]
        y_max = xp.abs(y).max(axis=1, keepdims=True)
        x_max = xp.abs(x).max(axis=1, keepdims=True)
        first = xp.argmin(y / y_max + (x / x_max) * 100, axis=1)
        steps = xp.ones(b.shape, np.int64)
        steps[:, 0] = first * 2
        indices = xp.cumsum(steps, axis=1) % 8
    return indices, xp.take_along_axis(b, indices, axis=1)


def _slopes(b):
    """Slope ``a`` and y-intercept ``c`` of each edge (corner ``i`` to ``i + 1``)."""
    xp = get_array_module(b)
    x, y = b[..., 0::2], b[..., 1::2]
    a = xp.diff(y, append=y[..., :1]) / xp.diff(x, append=x[..., :1])
    return a, y - a * x


def _intersections(a, c):
    """Corner ``i`` as the meeting point of edges ``i - 1`` and ``i``."""
    xp = get_array_module(a)
    x = -xp.diff(c, prepend=c[..., 3:4]) / xp.diff(a, prepend=a[..., 3:4])
    return xp.stack([x, a * x + c], axis=-1).reshape(a.shape[0], 8)


def _clip(v, lo, hi):
    # torch.clamp with tensor bounds: max first, then min (min wins when lo > hi)
    xp = get_array_module(v)
    return xp.minimum(xp.maximum(v, lo), hi)


def _clamp_intercepts(b, orig, canvas_size, mode):
    """New y-intercepts of the four edges of ``b``: edges 1 and 4 (the ones meeting at the
    left-most corner) kept inside the canvas height; in hard mode the opposite edges move in
    as far as the canvas requires. None leaves the original box."""
    xp = get_array_module(b)
    h, w = canvas_size
    a, c = _slopes(b)
    a1, a2, a3, a4 = (a[:, i] for i in range(4))
    c1, c2, c3, c4 = (c[:, i] for i in range(4))
    _, cm = _slopes(orig)
    c1m, c2m, c3m, c4m = (cm[:, i] for i in range(4))
    n1 = _clip(_clip(c2, c1, c3), 0, h)
    n4 = _clip(_clip(c3, c2, c4), 0, h)
    n2, n3 = c2, c3
    if mode == "hard":
        n1 = n4 = (n1 + n4) / 2
        n2 = xp.minimum(
            xp.stack([n1 * a2 / a1, c3 * a2 / a3, (a1 - a2) * w + n1, (a3 - a2) * w + c3], 1).max(
                1
            ),
            c2,
        )
        n3 = xp.maximum(
            xp.stack(
                [
                    h * (1 - a3 / a4) + n4 * a3 / a4,
                    h * (1 - a3 / a2) + n2 * a3 / a2,
                    (a2 - a3) * w + n2,
                    (a4 - a3) * w + n4,
                ],
                1,
            ).min(1),
            c3,
        )
        # edges 1 and 4 share one intercept here: both bounds apply to it
        n1 = n4 = _clip(_clip(n1, c1m, c3m), c2m, c4m)
    else:
        n1, n4 = _clip(n1, c1m, c3m), _clip(n4, c2m, c4m)
    return xp.stack([n1, _clip(n2, c2m, c4m), _clip(n3, c1m, c3m), n4], axis=-1)


def _clamp_left(b, orig, canvas_size, mode):
    """``b`` ``(N, 8)`` (left-most corner first) cut at ``x = 0`` along its own edges."""
    xp = get_array_module(b)
    a, _ = _slopes(b)
    x1, y1, x2, y2, x3, y3, x4, y4 = (b[:, i] for i in range(8))
    moved = _intersections(a, _clamp_intercepts(b, orig, canvas_size, mode))
    shifted = b.copy()
    shifted[:, 0] = xp.maximum(shifted[:, 0], 0)
    shifted[:, 6] = xp.maximum(shifted[:, 6], 0)
    flat = xp.isclose(y1, y2) | xp.isclose(y3, y4)  # axis-aligned: slopes are degenerate
    gone = (x1 <= 0) & (x2 <= 0) & (x3 <= 0) & (x4 <= 0)
    gone = gone | xp.isclose(y1, y4) | xp.isclose(y2, y3) | (flat & xp.isclose(x1, x2))
    out = b
    for cond, case in (
        ((x1 < 0) & ~xp.isnan(moved).any(-1), moved),
        (flat, shifted),
        (gone, xp.zeros_like(b)),
    ):
        out = xp.where(cond[:, None], case, out)
    return out


def clamp_rotated(a, fmt, canvas_size, mode):
    """Rotated boxes ``a`` in ``fmt`` clamped to ``canvas_size`` ``(H, W)`` by ``mode``:
    the box is cut at the left edge of the canvas, then the canvas is turned a quarter and
    the same is done for the next edge, four times."""
    if mode is None:
        return a.copy()
    fmt = _bf._as_format(fmt)
    xp = get_array_module(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = _bf.convert_array(a, fmt, _CORNERS).reshape(-1, 8).copy()
        orig = out.copy()
        size = tuple(canvas_size)
        for _ in range(4):
            idx, out = _order_points(out)
            _, orig = _order_points(orig, idx)
            out = _clamp_left(out, orig, size, mode)
            _, out = _order_points(out, idx)
            _, orig = _order_points(orig, idx)
            # turn the canvas a quarter counter-clockwise: (x, y) -> (y, W - x)
            out = _quarter_turn(out, size[1], xp)
            orig = _quarter_turn(orig, size[1], xp)
            size = (size[1], size[0])
    return _bf.convert_array(out, _CORNERS, fmt).reshape(a.shape)


def _quarter_turn(b, width, xp):
    out = xp.empty_like(b)
    out[:, 0::2] = b[:, 1::2]
    out[:, 1::2] = width - b[:, 0::2]
    return out


def clamp_axis_aligned(a, fmt, canvas_size, mode):
    """Axis-aligned boxes ``a`` clamped to the canvas (soft and hard agree); None copies."""
    if mode is None:
        return a.copy()
    xp = get_array_module(a)
    f = a.copy() if a.dtype.kind == "f" else a.astype(np.float32)
    b = _bf.convert_array(f, fmt, _F.XYXY)
    b = b.copy() if b is f else b
    h, w = canvas_size
    b[..., 0::2] = xp.clip(b[..., 0::2], 0, w)
    b[..., 1::2] = xp.clip(b[..., 1::2], 0, h)
    return _bf.convert_array(b, _F.XYXY, fmt).astype(a.dtype)


def clamp_array(a, fmt, canvas_size, mode):
    fmt = _bf._as_format(fmt)
    if tv.is_rotated_bounding_format(fmt):
        return clamp_rotated(a, fmt, canvas_size, mode)
    return clamp_axis_aligned(a, fmt, canvas_size, mode)


# ---- parallelograms back to rectangles -------------------------------------------------------
def parallelogram_to_rect(p):
    """Corners ``(..., 8)`` of parallelograms made rectangles: the two ends of the longest
    diagonal stay, the other two corners move."""
    xp = get_array_module(p)
    dtype = p.dtype
    if dtype not in (np.float32, np.float64):
        p = p.astype(np.float32)
    x1, y1, x2, y2, x3, y3, x4, y4 = (p[..., i] for i in range(8))
    cx, cy = (x1 + x3) / 2, (y1 + y3) / 2
    wp = xp.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
    hp = xp.sqrt((x4 - x1) ** 2 + (y4 - y1) ** 2)
    r12 = xp.arctan2(y1 - y2, x2 - x1)
    r14 = xp.arctan2(y1 - y4, x4 - x1)
    r = r12 - r14
    sign = xp.where(r > np.pi / 2, -1, 1).astype(p.dtype)
    cos, sin = xp.cos(r), xp.sin(r)
    w = xp.where(wp < hp, wp * sin, wp + hp * cos * sign)
    h = xp.where(wp > hp, hp * sin, hp + wp * cos * sign)
    r = xp.where(hp > wp, r14 + np.pi / 2, r12).astype(p.dtype)
    cos, sin = xp.cos(r), xp.sin(r)
    hw, hh = w / 2, h / 2
    out = xp.stack(
        [
            cx - hw * cos - hh * sin,
            cy - hh * cos + hw * sin,
            cx + hw * cos - hh * sin,
            cy - hh * cos - hw * sin,
            cx + hw * cos + hh * sin,
            cy + hh * cos - hw * sin,
            cx - hw * cos + hh * sin,
            cy + hh * cos + hw * sin,
        ],
        axis=-1,
    )
    return out.astype(dtype)


# ---- the kernels -----------------------------------------------------------------------------
def _finish(corners, a, fmt, canvas_size, mode):
    """Rectangles ``corners`` ``(N, 8)`` clamped and returned in ``fmt`` and ``a``'s shape."""
    out = clamp_rotated(corners, _CORNERS, canvas_size, mode)
    return _bf.convert_array(out, _CORNERS, fmt).astype(a.dtype).reshape(a.shape)


def resize(a, fmt, canvas_size, new_size, mode):
    (h, w), (nh, nw) = canvas_size, new_size
    if (nh, nw) == (h, w):
        return a
    xp = get_array_module(a)
    ratios = xp.asarray(np.array([nw / w, nh / h] * 4, np.float32))
    pts = _bf.convert_array(a, fmt, _CORNERS).reshape(-1, 8) * ratios
    return _finish(parallelogram_to_rect(pts), a, fmt, (nh, nw), mode)


def _shift(a, fmt, dx, dy):
    fmt = _bf._as_format(fmt)
    xp = get_array_module(a)
    d = [dx, dy] * 4 if fmt == _CORNERS else [dx, dy, 0, 0, 0]
    return a + xp.asarray(np.array(d, a.dtype))


def crop(a, fmt, top, left, height, width, mode):
    out = _shift(a, fmt, -left, -top)
    if _bf._as_format(fmt) == _CORNERS:
        out = parallelogram_to_rect(out)
    return clamp_rotated(out, fmt, (height, width), mode)


def pad(a, fmt, canvas_size, left, top, mode):
    return clamp_rotated(_shift(a, fmt, left, top), fmt, canvas_size, mode)


def affine(a, fmt, matrix, shift, canvas_size, mode):
    """Corners through the forward affine ``matrix`` (6 numbers), less ``shift`` (the
    top-left of an expanded canvas)."""
    if a.size == 0:
        return a
    xp = get_array_module(a)
    pts = _bf.convert_array(a, fmt, _CORNERS).reshape(-1, 2)
    m = xp.asarray(np.array(matrix, a.dtype).reshape(2, 3))
    moved = pts @ m[:, :2].T + m[:, 2]
    rect = parallelogram_to_rect(moved.reshape(-1, 8))
    rect = rect - xp.asarray(np.tile(np.asarray(shift, a.dtype), 4))
    return _finish(rect, a, fmt, canvas_size, mode)


def perspective(a, fmt, theta1, theta2, canvas_size, mode):
    """Corners through ``theta1 @ p / theta2 @ p`` (the inverse of the image's map)."""
    if a.size == 0:
        return a
    xp = get_array_module(a)
    pts = _bf.convert_array(a, fmt, _CORNERS).reshape(-1, 2)
    pts = xp.concatenate([pts, xp.ones((pts.shape[0], 1), pts.dtype)], axis=-1)
    t1, t2 = xp.asarray(theta1.astype(a.dtype)), xp.asarray(theta2.astype(a.dtype))
    moved = (pts @ t1.T) / (pts @ t2.T)
    return _finish(parallelogram_to_rect(moved.reshape(-1, 8)), a, fmt, canvas_size, mode)


def elastic(a, fmt, inv_grid, canvas_size, mode):
    """Each box's centre looked up in the approximate inverse grid ``inv_grid`` ``(H, W, 2)``
    (torchvision's approximation); size and angle are kept."""
    if a.size == 0:
        return a
    xp = get_array_module(a)
    h, w = canvas_size
    b = _bf.convert_array(a, fmt, _F.CXCYWHR).reshape(-1, 5)
    c = xp.ceil(b[:, :2])
    ix = xp.clip(c[:, 0].astype(np.int64), 0, w - 1)
    iy = xp.clip(c[:, 1].astype(np.int64), 0, h - 1)
    size = xp.asarray(np.array([w, h], inv_grid.dtype))
    centres = (inv_grid[iy, ix] + 1) * (0.5 * size) - 0.5
    out = xp.concatenate([centres.astype(b.dtype), b[:, 2:]], axis=1)
    out = clamp_rotated(out, _F.CXCYWHR, canvas_size, mode)
    return _bf.convert_array(out, _F.CXCYWHR, fmt).reshape(a.shape)
