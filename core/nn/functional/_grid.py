"""Spatial transformers: ``affine_grid`` and ``grid_sample`` (bilinear / nearest / bicubic,
zeros / border / reflection padding, ``align_corners``).

``grid_sample`` is a composition of differentiable ops: the integer corner positions come from
the grid's values (no gradient), the interpolation weights are differentiable functions of the
grid, and the corner values are ``gather``-ed from the input, so both ``input`` and ``grid``
get PyTorch's gradients.
"""

from __future__ import annotations

import warnings

import numpy as np

from ... import ops
from ...backend.device import get_array_module
from ...creation import linspace, ones
from ...tensor import Tensor

__all__ = [
    "GRID_SAMPLE_INTERPOLATION_MODES",
    "GRID_SAMPLE_PADDING_MODES",
    "affine_grid",
    "grid_sample",
]

GRID_SAMPLE_INTERPOLATION_MODES = {"bilinear": 0, "nearest": 1, "bicubic": 2}
GRID_SAMPLE_PADDING_MODES = {"zeros": 0, "border": 1, "reflection": 2}

_ALIGN_WARNING = (
    "Default grid_sample and affine_grid behavior has changed to "
    "align_corners=False since 1.3.0. Please specify align_corners=True if the old "
    "behavior is desired. See the documentation of grid_sample for details."
)


def _base_coords(n: int, align_corners: bool, like: Tensor) -> Tensor:
    """Normalised pixel centres along one axis: -1..1 (corners) or shrunk by (n-1)/n."""
    x = linspace(-1, 1, n, dtype=like.dtype, device=like.device)
    if not align_corners:
        x = x * ((n - 1) / n)
    return x


def affine_grid(theta: Tensor, size: list[int], align_corners: bool | None = None) -> Tensor:
    r"""The sampling grid (N, H, W, 2) (or (N, D, H, W, 3)) of the affine maps ``theta``
    (N, 2, 3) (or (N, 3, 4)) for an output of ``size``; feed it to :func:`grid_sample`."""
    if align_corners is None:
        warnings.warn(_ALIGN_WARNING, stacklevel=2)
        align_corners = False
    if not theta.is_floating_point():
        raise ValueError(f"Expected theta to have floating point type, but got {theta.dtype}")
    size = list(size)
    if len(size) == 4:
        if theta.dim() != 3 or tuple(theta.shape[-2:]) != (2, 3):
            raise ValueError(
                f"Expected a batch of 2D affine matrices of shape Nx2x3 for size "
                f"{size}. Got {theta.shape}."
            )
        spatial = size[-2:]
    elif len(size) == 5:
        if theta.dim() != 3 or tuple(theta.shape[-2:]) != (3, 4):
            raise ValueError(
                f"Expected a batch of 3D affine matrices of shape Nx3x4 for size "
                f"{size}. Got {theta.shape}."
            )
        spatial = size[-3:]
    else:
        raise NotImplementedError(
            "affine_grid only supports 4D and 5D sizes, for 2D and 3D "
            f"affine transforms, respectively. Got size {size}."
        )
    if align_corners and min(spatial) == 1:
        warnings.warn(
            "Since version 1.3.0, affine_grid behavior has changed for unit-size "
            "grids when align_corners=True. This is not an intended use case of "
            "affine_grid. See the documentation of affine_grid for details.",
            stacklevel=2,
        )
    elif min(size) <= 0:
        raise ValueError(f"Expected non-zero, positive output size. Got {size}")
    nd = len(spatial)
    # base[..., :] = (x, y[, z], 1) with x along the last spatial axis
    axes = [_base_coords(s, align_corners, theta) for s in spatial]
    cols = []
    for k in range(nd):  # coordinate k (x, y, z) varies along spatial axis nd - 1 - k
        ax = nd - 1 - k
        shape = [1] * nd
        shape[ax] = spatial[ax]
        cols.append(ops.broadcast_to(axes[ax].reshape(shape), tuple(spatial)))
    cols.append(ones(tuple(spatial), dtype=theta.dtype, device=theta.device))
    base = ops.stack(cols, -1).reshape(1, -1, nd + 1)
    grid = ops.matmul(base, ops.transpose(theta, 1, 2))  # (N, prod(spatial), nd)
    return grid.reshape([size[0]] + spatial + [nd])


# ---- grid_sample ----------------------------------------------------------------------------
def _unnormalize(coord: Tensor, size: int, align_corners: bool) -> Tensor:
    if align_corners:
        return (coord + 1) * ((size - 1) / 2)
    return ((coord + 1) * size - 1) / 2


def _reflect(x: Tensor, twice_low: float, twice_high: float) -> Tensor:
    """Reflect ``x`` into [twice_low / 2, twice_high / 2] (PyTorch's reflect_coordinates)."""
    if twice_low == twice_high:
        return x * 0
    lo = twice_low / 2
    span = (twice_high - twice_low) / 2
    a = ops.abs(x - lo)
    flips = ops.floor(a.detach() / span)
    extra = a - flips * span
    even = ops.remainder(flips, 2) == 0
    return ops.where(even, extra + lo, span - extra + lo)


def _pad_coord(x: Tensor, size: int, padding_mode: str, align_corners: bool) -> Tensor:
    if padding_mode == "border":
        return x.clamp(0, size - 1)
    if padding_mode == "reflection":
        if align_corners:
            x = _reflect(x, 0, 2 * (size - 1))
        else:
            x = _reflect(x, -1, 2 * size - 1)
        return x.clamp(0, size - 1)
    return x


class _Gatherer:
    """Reads input values at integer positions (one array per spatial axis, x first)."""

    def __init__(self, input: Tensor, out_spatial):
        self.n, self.c = input.shape[0], input.shape[1]
        self.sizes = list(input.shape[2:])[::-1]  # W, H[, D]: the size along x, y[, z]
        self.flat = input.reshape(self.n, self.c, -1)
        self.out_spatial = tuple(out_spatial)
        self.xp = get_array_module(input._data)

    def read(self, positions):
        """Values at ``positions`` (integer arrays, x first) and the in-bounds mask."""
        xp = self.xp
        inside = xp.ones(positions[0].shape, dtype=bool)
        lin = xp.zeros(positions[0].shape, dtype=np.int64)
        stride = 1
        for pos, size in zip(positions, self.sizes):
            inside &= (pos >= 0) & (pos < size)
            lin = lin + xp.clip(pos, 0, size - 1).astype(np.int64) * stride
            stride *= size
        idx = Tensor._wrap(lin.reshape(self.n, 1, -1))
        idx = ops.expand(idx, (self.n, self.c, idx.shape[-1]))
        vals = ops.gather(self.flat, 2, idx).reshape((self.n, self.c) + self.out_spatial)
        return vals, inside.reshape((self.n, 1) + self.out_spatial)


def _cubic_weights(t: Tensor):
    a = -0.75  # PyTorch's (and OpenCV's) cubic convolution coefficient

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def _data(t: Tensor):
    return t._data


def grid_sample(
    input: Tensor,
    grid: Tensor,
    mode: str = "bilinear",
    padding_mode: str = "zeros",
    align_corners: bool | None = None,
) -> Tensor:
    r"""Sample ``input`` (N, C, H, W) or (N, C, D, H, W) at the normalised positions ``grid``
    (N, H_out, W_out, 2) or (N, D_out, H_out, W_out, 3), (-1, -1) the top-left corner."""
    if mode not in GRID_SAMPLE_INTERPOLATION_MODES:
        raise ValueError(
            f"nn.functional.grid_sample(): expected mode to be 'bilinear', "
            f"'nearest' or 'bicubic', but got: '{mode}'"
        )
    if padding_mode not in GRID_SAMPLE_PADDING_MODES:
        raise ValueError(
            "nn.functional.grid_sample(): expected padding_mode to be 'zeros', "
            f"'border', or 'reflection', but got: '{padding_mode}'"
        )
    if align_corners is None:
        warnings.warn(_ALIGN_WARNING, stacklevel=2)
        align_corners = False
    nd = input.dim() - 2
    if nd not in (2, 3) or grid.dim() != input.dim() or grid.shape[-1] != nd:
        raise RuntimeError(
            f"grid_sampler(): expected grid to have size {nd} in last dimension, "
            f"but got grid with sizes {list(grid.shape)}"
        )
    if grid.shape[0] != input.shape[0]:
        raise RuntimeError(
            f"grid_sampler(): expected grid and input to have same batch size, "
            f"but got input with sizes {list(input.shape)} and grid with sizes "
            f"{list(grid.shape)}"
        )
    if mode == "bicubic" and nd != 2:
        raise RuntimeError("grid_sampler(): bicubic interpolation only supports 4D input")
    g = _Gatherer(input, grid.shape[1:-1])
    xp = g.xp
    coords = [_unnormalize(grid[..., k], g.sizes[k], align_corners) for k in range(nd)]
    if mode == "bicubic":
        return _bicubic(g, coords, padding_mode, align_corners)
    coords = [_pad_coord(c, g.sizes[k], padding_mode, align_corners) for k, c in enumerate(coords)]
    if mode == "nearest":
        pos = [xp.rint(_data(c)).astype(np.int64) for c in coords]  # half to even, as nearbyint
        vals, inside = g.read(pos)
        return ops.where(Tensor._wrap(inside), vals, vals * 0)
    low = [xp.floor(_data(c)).astype(np.int64) for c in coords]
    frac = [c - Tensor._wrap(lo.astype(_data(c).dtype)) for c, lo in zip(coords, low)]
    out = None
    for corner in range(2**nd):
        pos, weight = [], None
        for k in range(nd):
            hi = (corner >> k) & 1
            pos.append(low[k] + hi)
            w = frac[k] if hi else 1 - frac[k]
            weight = w if weight is None else weight * w
        vals, inside = g.read(pos)
        term = ops.where(Tensor._wrap(inside), vals * weight.unsqueeze(1), vals * 0)
        out = term if out is None else out + term
    return out


def _bicubic(g: _Gatherer, coords, padding_mode: str, align_corners: bool) -> Tensor:
    xp = g.xp
    x, y = coords
    x0 = xp.floor(_data(x)).astype(np.int64)
    y0 = xp.floor(_data(y)).astype(np.int64)
    wx = _cubic_weights(x - Tensor._wrap(x0.astype(_data(x).dtype)))
    wy = _cubic_weights(y - Tensor._wrap(y0.astype(_data(y).dtype)))

    def tap(pos, size):
        # each tap's position is padded on its own (PyTorch's get_value_bounded)
        if padding_mode == "zeros":
            return pos
        p = Tensor._wrap(pos.astype(np.float64))
        return xp.asarray(_data(_pad_coord(p, size, padding_mode, align_corners))).astype(np.int64)

    out = None
    for j in range(4):
        py = tap(y0 - 1 + j, g.sizes[1])
        for i in range(4):
            px = tap(x0 - 1 + i, g.sizes[0])
            vals, inside = g.read([px, py])
            w = (wx[i] * wy[j]).unsqueeze(1)
            term = ops.where(Tensor._wrap(inside), vals * w, vals * 0)
            out = term if out is None else out + term
    return out
