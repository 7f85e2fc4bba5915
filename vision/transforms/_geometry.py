"""Resampling for tensor images: resize (nearest / bilinear / bicubic, with or without
antialiasing) and affine warps (rotate, affine) with torchvision's conventions.

Resizing is separable: one ``(out, in)`` weight matrix per axis, applied as two matrix
products, which serves NumPy and CuPy alike. The weights follow PyTorch's kernels:
``upsample_{bilinear,bicubic}2d`` (``align_corners=False``; bicubic with A = -0.75) and, with
``antialias=True``, the ``_upsample_*_aa`` kernels (PIL's filters, bicubic with a = -0.5).
"""

from __future__ import annotations

import math

import numpy as np

from ember.backend.device import get_array_module

from ._functional_tensor import _cast_in, _cast_out


def _aa_filter(mode: str):
    if mode == "bilinear":
        return lambda x: np.maximum(1.0 - np.abs(x), 0.0), 2
    a = -0.5

    def cubic(x):
        x = np.abs(x)
        near = ((a + 2) * x - (a + 3)) * x * x + 1
        far = (((x - 5) * x + 8) * x - 4) * a
        return np.where(x < 1, near, np.where(x < 2, far, 0.0))

    return cubic, 4


def _weights(n_in: int, n_out: int, mode: str, antialias: bool) -> np.ndarray:
    scale = n_in / n_out
    w = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    if mode == "nearest-exact":  # pixel centres: floor((i + 0.5) * scale)
        prod = (rows.astype(np.float32) + np.float32(0.5)) * np.float32(scale)
        w[rows, np.minimum(np.floor(prod).astype(np.int64), n_in - 1)] = 1.0
        return w
    if mode == "nearest":
        # float32 product as PyTorch's kernel computes it (22 -> 14 maps 7 to 10, not 11).
        prod = rows.astype(np.float32) * np.float32(scale)
        src = np.minimum(np.floor(prod).astype(np.int64), n_in - 1)
        w[rows, src] = 1.0
        return w
    if antialias:
        filt, size = _aa_filter(mode)
        support = size * 0.5 * scale if scale >= 1.0 else size * 0.5
        invscale = 1.0 / scale if scale >= 1.0 else 1.0
        for i in range(n_out):
            center = scale * (i + 0.5)
            lo = max(int(center - support + 0.5), 0)
            hi = min(int(center + support + 0.5), n_in)
            taps = filt((np.arange(lo, hi) - center + 0.5) * invscale)
            total = taps.sum()
            w[i, lo:hi] = taps / total if total != 0 else taps
        return w
    src = (rows + 0.5) * scale - 0.5
    if mode == "bilinear":
        src = np.maximum(src, 0.0)
        i0 = src.astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        frac = src - i0
        np.add.at(w, (rows, i0), 1.0 - frac)
        np.add.at(w, (rows, i1), frac)
        return w
    # bicubic, A = -0.75, neighbours clamped to the border
    A = -0.75
    i0 = np.floor(src).astype(np.int64)
    t = src - i0

    def c1(x):
        return ((A + 2) * x - (A + 3)) * x * x + 1

    def c2(x):
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A

    for k, coeff in enumerate((c2(t + 1), c1(t), c1(1 - t), c2(2 - t))):
        np.add.at(w, (rows, np.clip(i0 - 1 + k, 0, n_in - 1)), coeff)
    return w


def resize(a, out_h: int, out_w: int, mode: str, antialias: bool):
    xp = get_array_module(a)
    if mode not in ("nearest", "nearest-exact", "bilinear", "bicubic"):
        raise ValueError(
            f"interpolation {mode!r} is not supported for tensor images; use "
            "nearest, nearest-exact, bilinear or bicubic (PIL images support "
            "box, hamming and lanczos too)"
        )
    aa = antialias and mode in ("bilinear", "bicubic")
    h, w = a.shape[-2:]
    f = _cast_in(a, xp)
    wy = xp.asarray(_weights(h, out_h, mode, aa).astype(f.dtype))
    wx = xp.asarray(_weights(w, out_w, mode, aa).astype(f.dtype))
    out = xp.matmul(xp.matmul(wy, f), wx.T)
    if mode == "bicubic" and a.dtype == np.uint8:
        out = xp.clip(out, 0, 255)
    return _cast_out(out, a.dtype, xp)


# ---- affine warps -----------------------------------------------------------------------------
def inverse_affine_matrix(center, angle: float, translate, scale: float, shear) -> list[float]:
    """The inverse of ``T * C * R * S * Sh * C^-1`` as torchvision defines it (6 numbers)."""
    rot = math.radians(angle)
    sx, sy = math.radians(shear[0]), math.radians(shear[1])
    cx, cy = center
    tx, ty = translate
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    m = [d / scale, -b / scale, 0.0, -c / scale, a / scale, 0.0]
    m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty) + cx
    m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty) + cy
    return m


def affine_output_size(matrix, w: int, h: int) -> tuple[int, int]:
    pts = np.array(
        [
            [-0.5 * w, -0.5 * h, 1.0],
            [-0.5 * w, 0.5 * h, 1.0],
            [0.5 * w, 0.5 * h, 1.0],
            [0.5 * w, -0.5 * h, 1.0],
        ],
        np.float32,
    )
    new = pts @ np.asarray(matrix, np.float32).reshape(2, 3).T
    # rounded in image coordinates ([0, w] x [0, h]), as PIL and torchvision round
    shift = np.array([0.5 * w, 0.5 * h], np.float32)
    tol = 1e-4
    cmax = np.ceil(np.trunc((new.max(0) + shift) / tol) * tol)
    cmin = np.floor(np.trunc((new.min(0) + shift) / tol) * tol)
    size = cmax - cmin
    return int(size[0]), int(size[1])


def _grid(matrix, w: int, h: int, ow: int, oh: int) -> np.ndarray:
    # Output pixel centres relative to the image centre, mapped by the inverse matrix and
    # normalised to [-1, 1] as grid_sample expects (align_corners=False).
    xs = np.linspace(-ow * 0.5 + 0.5, ow * 0.5 - 0.5, ow, dtype=np.float32)
    ys = np.linspace(-oh * 0.5 + 0.5, oh * 0.5 - 0.5, oh, dtype=np.float32)
    base = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], np.float32(1.0)), -1)
    theta = np.asarray(matrix, np.float32).reshape(2, 3).T / np.array(
        [0.5 * w, 0.5 * h], np.float32
    )
    return base.reshape(-1, 3) @ theta  # (oh*ow, 2), normalised x, y


def _grid_sample(f, grid, oh: int, ow: int, mode: str, xp):
    # grid_sample(padding_mode="zeros", align_corners=False) on (..., C, H, W) float arrays.
    h, w = f.shape[-2:]
    ix = ((grid[:, 0] + 1) * w - 1) / 2
    iy = ((grid[:, 1] + 1) * h - 1) / 2
    flat = f.reshape(f.shape[:-2] + (h * w,))
    if mode == "nearest":
        corners = [(np.rint(ix), np.rint(iy), np.ones_like(ix))]
    else:
        x0, y0 = np.floor(ix), np.floor(iy)
        fx, fy = ix - x0, iy - y0
        corners = [
            (x0, y0, (1 - fx) * (1 - fy)),
            (x0 + 1, y0, fx * (1 - fy)),
            (x0, y0 + 1, (1 - fx) * fy),
            (x0 + 1, y0 + 1, fx * fy),
        ]
    out = 0
    for cx, cy, wt in corners:
        inside = (cx >= 0) & (cx < w) & (cy >= 0) & (cy < h)
        idx = np.where(inside, cy * w + cx, 0).astype(np.int64)
        wt = np.where(inside, wt, 0).astype(f.dtype)
        out = out + flat[..., xp.asarray(idx)] * xp.asarray(wt)
    return out.reshape(f.shape[:-2] + (oh, ow))


def warp_affine(a, matrix, mode: str, fill, out_size=None):
    """Apply the inverse ``matrix`` (pixel units, centre origin) with torchvision's fill rule."""
    h, w = a.shape[-2:]
    ow, oh = out_size if out_size is not None else (w, h)
    return _warp(a, _grid(matrix, w, h, ow, oh), oh, ow, mode, fill)


def perspective_coeffs(startpoints, endpoints) -> list[float]:
    """The eight coefficients ``a..h`` that map an output pixel ``(x, y)`` to the input pixel
    ``((a x + b y + c) / (g x + h y + 1), (d x + e y + f) / (g x + h y + 1))``, so that the four
    ``endpoints`` land on the four ``startpoints`` (least squares in float64, as torchvision)."""
    if len(startpoints) != 4 or len(endpoints) != 4:
        raise ValueError(
            f"Please provide exactly four corners, got {len(startpoints)} startpoints and "
            f"{len(endpoints)} endpoints."
        )
    rows = []
    for (x, y), (u, v) in zip(endpoints, startpoints):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    b = np.asarray(startpoints, np.float64).reshape(8)
    sol = np.linalg.lstsq(np.asarray(rows, np.float64), b, rcond=None)[0]
    return sol.astype(np.float32).tolist()


def _perspective_grid(coeffs, w: int, h: int) -> np.ndarray:
    # output pixel centres (x + 0.5, y + 0.5) through the projective map, normalised to [-1, 1]
    xs = np.arange(w, dtype=np.float32) + np.float32(0.5)
    ys = np.arange(h, dtype=np.float32) + np.float32(0.5)
    base = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], np.float32(1.0)), -1)
    base = base.reshape(-1, 3)
    c = np.asarray(coeffs, np.float32)
    num = base @ (c[:6].reshape(2, 3).T / np.array([0.5 * w, 0.5 * h], np.float32))
    den = base @ np.array([c[6], c[7], 1.0], np.float32)
    return num / den[:, None] - 1.0


def warp_perspective(a, coeffs, mode: str, fill):
    """Apply :func:`perspective_coeffs`' map to a ``(..., C, H, W)`` array, torchvision's fill."""
    h, w = a.shape[-2:]
    return _warp(a, _perspective_grid(coeffs, w, h), h, w, mode, fill)


def warp_displaced(a, displacement, mode: str, fill):
    """Sample ``a`` at the identity grid plus ``displacement`` (``(1, H, W, 2)``, grid_sample's
    [-1, 1] units): torchvision's elastic transform."""
    h, w = a.shape[-2:]
    xs = np.linspace((-w + 1) / w, (w - 1) / w, w, dtype=np.float32)
    ys = np.linspace((-h + 1) / h, (h - 1) / h, h, dtype=np.float32)
    base = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None]), -1)
    grid = (base + np.asarray(displacement, np.float32).reshape(h, w, 2)).reshape(-1, 2)
    return _warp(a, grid, h, w, mode, fill)


def _warp(a, grid, oh: int, ow: int, mode: str, fill):
    if mode not in ("nearest", "bilinear"):
        raise ValueError(
            f"interpolation {mode!r} is not supported for tensor images; use nearest or bilinear"
        )
    xp = get_array_module(a)
    f = a.astype(np.float32) if a.dtype != np.float64 else a
    if fill is not None:
        # torchvision appends a ones channel, warps it too, and blends the fill in by it.
        ones = xp.ones(f.shape[:-3] + (1,) + f.shape[-2:], f.dtype)
        f = xp.concatenate([f, ones], axis=-3)
    out = _grid_sample(f, grid, oh, ow, mode, xp)
    if fill is not None:
        out, mask = out[..., :-1, :, :], out[..., -1:, :, :]
        c = out.shape[-3]
        fills = [float(v) for v in (fill if isinstance(fill, (list, tuple)) else [fill])]
        if len(fills) not in (1, c):
            raise ValueError(
                f"The number of elements in 'fill' does not match the number of "
                f"channels of the image ({len(fills)} != {c})"
            )
        fill_img = xp.asarray(np.array(fills * (c if len(fills) == 1 else 1), f.dtype)).reshape(
            c, 1, 1
        )
        if mode == "nearest":
            out = xp.where(mask < 0.5, fill_img, out)
        else:
            out = out * mask + (1.0 - mask) * fill_img
    return _cast_out(out, a.dtype, xp)
