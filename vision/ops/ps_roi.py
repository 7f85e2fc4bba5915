"""Position-sensitive RoI pooling (Dai et al. 2016, R-FCN): ``ps_roi_align``, ``ps_roi_pool``.

The input has ``C_out * PH * PW`` channels; output bin ``(i, j)`` of channel ``c`` pools only
input channel ``(c * PH + i) * PW + j`` over that bin. Both operators are averages over a bin
that factor by axis (bilinear samples for the align variant, the bin's rectangle for the pool
variant), so they reuse RoIAlign's separable form: every channel pooled into every bin,
``Wy @ input @ Wx^T``, then the diagonal that pairs channel block ``i * PW + j`` with bin
``(i, j)``. Autograd reaches the input through those products, as in torchvision (boxes get
no gradient).
"""

from __future__ import annotations

import math

import numpy as np

from ember import Tensor, nn

from ._utils import host_rois, pair
from .roi_align import _region_weights, separable_pool
from .roi_pool import _round

__all__ = ["PSRoIAlign", "PSRoIPool", "ps_roi_align", "ps_roi_pool"]


def _check_channels(input: Tensor, ph: int, pw: int, name: str) -> int:
    c = input.shape[1]
    if c % (ph * pw):
        raise ValueError(
            f"{name}: input channels must be a multiple of output_size[0] * output_size[1] = "
            f"{ph * pw}, got {c} channels"
        )
    return c // (ph * pw)


def _position_sensitive(full: Tensor, c_out: int, ph: int, pw: int) -> Tensor:
    """``full`` ``(K, C_out * PH * PW, PH, PW)`` -> ``(K, C_out, PH, PW)``: bin ``(i, j)`` of
    channel ``c`` from channel ``(c * PH + i) * PW + j``."""
    k = full.shape[0]
    blocks = full.reshape(k, c_out, ph * pw, ph * pw)  # (channel block, bin)
    return blocks.diagonal(dim1=2, dim2=3).reshape(k, c_out, ph, pw)


def ps_roi_align(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
) -> Tensor:
    """Position-sensitive RoIAlign: ``input`` ``(N, C_out * PH * PW, H, W)`` and ``boxes``
    (``(K, 5)`` or a list of per-image ``(L, 4)``) give ``(K, C_out, PH, PW)``. Pixel centres
    sit at half-integers (torchvision's kernel has no ``aligned`` switch here); each bin
    averages ``sampling_ratio`` bilinear samples per axis (``<= 0``: ``ceil(bin size)``)."""
    host = host_rois(input, boxes, "ps_roi_align")
    ph, pw = pair(output_size)
    c_out = _check_channels(input, ph, pw, "ps_roi_align")
    if host.shape[0] == 0:
        return input.new_zeros((0, c_out, ph, pw))
    _, _, height, width = input.shape
    wy, wx = _region_weights(host, height, width, ph, pw, spatial_scale, sampling_ratio, True)
    return _position_sensitive(separable_pool(input, host, wy, wx), c_out, ph, pw)


def _bin_weights(start: int, bin_size: float, pooled: int, size: int) -> np.ndarray:
    """``(pooled, size)``: row ``p`` averages the clipped bin ``[floor(p b), ceil((p + 1) b))``
    shifted by ``start`` (torchvision's forward clips to ``size - 1``; empty bins stay 0)."""
    w = np.zeros((pooled, size))
    for p in range(pooled):
        lo = min(max(math.floor(p * bin_size) + start, 0), size - 1)
        hi = min(max(math.ceil((p + 1) * bin_size) + start, 0), size - 1)
        if hi > lo:
            w[p, lo:hi] = 1.0 / (hi - lo)
    return w


def ps_roi_pool(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """Position-sensitive RoIPool: the *average* of each bin (R-FCN's pooling; box corners
    rounded to the grid after ``spatial_scale``, regions at least one pixel), from the bin's
    own channel block. ``input`` ``(N, C_out * PH * PW, H, W)`` -> ``(K, C_out, PH, PW)``."""
    host = host_rois(input, boxes, "ps_roi_pool")
    ph, pw = pair(output_size)
    c_out = _check_channels(input, ph, pw, "ps_roi_pool")
    k = host.shape[0]
    if k == 0:
        return input.new_zeros((0, c_out, ph, pw))
    _, _, height, width = input.shape
    wy, wx = np.zeros((k, ph, height)), np.zeros((k, pw, width))
    for r, (_, x1, y1, x2, y2) in enumerate(host):
        sw, sh = _round(x1 * spatial_scale), _round(y1 * spatial_scale)
        ew, eh = _round(x2 * spatial_scale), _round(y2 * spatial_scale)
        rh, rw = max(eh - sh, 1), max(ew - sw, 1)
        wy[r] = _bin_weights(sh, rh / ph, ph, height)
        wx[r] = _bin_weights(sw, rw / pw, pw, width)
    return _position_sensitive(separable_pool(input, host, wy, wx), c_out, ph, pw)


class PSRoIAlign(nn.Module):
    """``ps_roi_align`` as a layer."""

    def __init__(
        self, output_size: int | tuple[int, int], spatial_scale: float, sampling_ratio: int
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return ps_roi_align(input, rois, self.output_size, self.spatial_scale, self.sampling_ratio)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, "
            f"spatial_scale={self.spatial_scale}, sampling_ratio={self.sampling_ratio})"
        )


class PSRoIPool(nn.Module):
    """``ps_roi_pool`` as a layer."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return ps_roi_pool(input, rois, self.output_size, self.spatial_scale)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, "
            f"spatial_scale={self.spatial_scale})"
        )
