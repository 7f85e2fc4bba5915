"""RoIAlign (He et al. 2017, Mask R-CNN): average bilinear samples per output bin.

Bilinear sampling on a regular grid is separable: for one region, each output value is
``sum_y sum_x wy[y] wx[x] input[y, x]``, so the whole region's ``(PH, PW)`` output per channel
is ``Wy @ input @ Wx^T`` with ``Wy`` a ``(PH, H)`` and ``Wx`` a ``(PW, W)`` matrix holding
the averaged interpolation weights of the bin's samples (and zeros for samples that fall
outside the image, as torchvision's kernel drops them). The weights come from the boxes on the
host; the products are ember matmuls, so autograd gives the input's gradient (boxes get none,
as in torchvision) and the computation runs on the input's device.
"""

from __future__ import annotations

import math

import numpy as np

import ember
from ember import Tensor, nn

from ._utils import host_rois, pair

__all__ = ["RoIAlign", "roi_align", "separable_pool"]


def _axis_weights(start, bin_size, pooled, grid, size) -> np.ndarray:
    """``(pooled, size)`` averaged bilinear weights along one axis of one region."""
    w = np.zeros((pooled, size))
    if grid <= 0:
        return w
    offs = (np.arange(grid) + 0.5) * bin_size / grid
    pos = start + np.arange(pooled)[:, None] * bin_size + offs[None, :]  # (pooled, grid)
    valid = (pos >= -1.0) & (pos <= size)
    pos = np.maximum(pos, 0.0)
    low = np.floor(pos).astype(np.int64)
    at_edge = low >= size - 1
    low = np.where(at_edge, size - 1, low)
    high = np.where(at_edge, size - 1, low + 1)
    pos = np.where(at_edge, low, pos)
    frac = pos - low
    rows = np.repeat(np.arange(pooled), grid).reshape(pooled, grid)
    np.add.at(w, (rows[valid], low[valid]), (1.0 - frac)[valid] / grid)
    np.add.at(w, (rows[valid], high[valid]), frac[valid] / grid)
    return w


def _region_weights(rois, height, width, ph, pw, scale, ratio, aligned):
    k = rois.shape[0]
    wy, wx = np.zeros((k, ph, height)), np.zeros((k, pw, width))
    off = 0.5 if aligned else 0.0
    for i, (_, x1, y1, x2, y2) in enumerate(rois):
        sx, sy, ex, ey = x1 * scale - off, y1 * scale - off, x2 * scale - off, y2 * scale - off
        rw, rh = ex - sx, ey - sy
        if not aligned:  # legacy behaviour: regions at least one pixel wide
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        gh = ratio if ratio > 0 else math.ceil(rh / ph)
        gw = ratio if ratio > 0 else math.ceil(rw / pw)
        wy[i] = _axis_weights(sy, rh / ph, ph, gh, height)
        wx[i] = _axis_weights(sx, rw / pw, pw, gw, width)
    return wy, wx


def roi_align(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> Tensor:
    """Pool each region of ``boxes`` from ``input`` ``(N, C, H, W)`` to ``(C, *output_size)``
    by averaging bilinear samples: ``sampling_ratio`` per bin and axis (``<= 0``: adaptive,
    ``ceil(region / output)``). ``spatial_scale`` maps box coordinates to the input's; with
    ``aligned=True`` pixel centres sit at half-integers. Returns ``(K, C, PH, PW)``."""
    host = host_rois(input, boxes, "roi_align")
    ph, pw = pair(output_size)
    _, c, height, width = input.shape
    k = host.shape[0]
    if k == 0:
        return input.new_zeros((0, c, ph, pw))
    wy, wx = _region_weights(host, height, width, ph, pw, spatial_scale, sampling_ratio, aligned)
    return separable_pool(input, host, wy, wx)


def separable_pool(input: Tensor, host: np.ndarray, wy: np.ndarray, wx: np.ndarray) -> Tensor:
    """``out[k] = Wy[k] @ input[batch[k]] @ Wx[k]^T`` for each region ``k`` of ``host`` (its
    ``(K, 5)`` rows), every channel at once: ``wy`` is ``(K, PH, H)``, ``wx`` ``(K, PW, W)``.
    Returns ``(K, C, PH, PW)``; autograd reaches ``input``."""
    _, c, height, width = input.shape
    k, ph, pw = wy.shape[0], wy.shape[1], wx.shape[1]
    batch = host[:, 0].astype(np.int64)
    parts, order = [], []
    for b in np.unique(batch):
        idx = np.nonzero(batch == b)[0]
        kb = idx.size
        wy_b = ember.from_numpy(wy[idx].reshape(kb * ph, height)).to(input.dtype).to(input.device)
        wx_b = ember.from_numpy(wx[idx].transpose(0, 2, 1).copy()).to(input.dtype).to(input.device)
        x_b = input[int(b)].permute(1, 0, 2).reshape(height, c * width)
        rows = (wy_b @ x_b).reshape(kb, ph * c, width)  # Wy @ input, every channel at once
        res = (rows @ wx_b).reshape(kb, ph, c, pw).permute(0, 2, 1, 3)  # ... @ Wx^T
        parts.append(res)
        order.append(idx)
    out = ember.cat(parts, dim=0)
    inverse = np.empty(k, dtype=np.int64)
    inverse[np.concatenate(order)] = np.arange(k)
    return out[ember.from_numpy(inverse).to(input.device)]


class RoIAlign(nn.Module):
    """``roi_align`` as a layer."""

    def __init__(
        self,
        output_size: int | tuple[int, int],
        spatial_scale: float,
        sampling_ratio: int,
        aligned: bool = False,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_align(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned
        )

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, "
            f"spatial_scale={self.spatial_scale}, sampling_ratio={self.sampling_ratio}, "
            f"aligned={self.aligned})"
        )
