"""RoIPool (Girshick 2015, Fast R-CNN): the maximum of each output bin of each region.

Which element is the maximum is decided on the host from the input's values (the first one in
row-major order on ties, as torchvision's kernel); the output is then a ``take`` of those
elements, so autograd routes each bin's gradient to its maximum and the values stay on the
input's device.
"""

from __future__ import annotations

import math

import numpy as np

import ember
from ember import Tensor, nn

from ._utils import host_rois, pair

__all__ = ["RoIPool", "roi_pool"]


def _round(v: float) -> int:
    # C's round(): halves away from zero (Python's round() goes to even)
    return int(math.floor(v + 0.5)) if v >= 0 else -int(math.floor(-v + 0.5))


def roi_pool(
    input: Tensor,
    boxes: Tensor | list[Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> Tensor:
    """Max-pool each region of ``boxes`` (coordinates rounded to the input's grid after
    ``spatial_scale``) into ``output_size`` bins; empty bins give 0. Returns
    ``(K, C, PH, PW)``."""
    rois = host_rois(input, boxes, "roi_pool")
    ph, pw = pair(output_size)
    _, c, height, width = input.shape
    k = rois.shape[0]
    if k == 0:
        return input.new_zeros((0, c, ph, pw))
    x = input.detach().cpu().numpy()
    flat = np.zeros((k, c, ph, pw), dtype=np.int64)  # index into input.reshape(-1)
    keep = np.zeros((k, 1, ph, pw), dtype=bool)
    chan = np.arange(c)
    for i, (b, x1, y1, x2, y2) in enumerate(rois):
        b = int(b)
        sw, sh = _round(x1 * spatial_scale), _round(y1 * spatial_scale)
        ew, eh = _round(x2 * spatial_scale), _round(y2 * spatial_scale)
        bin_h = max(eh - sh + 1, 1) / ph
        bin_w = max(ew - sw + 1, 1) / pw
        for py in range(ph):
            hs = min(max(math.floor(py * bin_h) + sh, 0), height)
            he = min(max(math.ceil((py + 1) * bin_h) + sh, 0), height)
            for px in range(pw):
                ws = min(max(math.floor(px * bin_w) + sw, 0), width)
                we = min(max(math.ceil((px + 1) * bin_w) + sw, 0), width)
                if he <= hs or we <= ws:
                    continue
                region = x[b, :, hs:he, ws:we].reshape(c, -1)
                arg = region.argmax(axis=1)
                h, w = hs + arg // (we - ws), ws + arg % (we - ws)
                flat[i, :, py, px] = ((b * c + chan) * height + h) * width + w
                keep[i, 0, py, px] = True
    index = ember.from_numpy(flat).to(input.device)
    out = input.reshape(-1)[index.reshape(-1)].reshape(k, c, ph, pw)
    mask = ember.from_numpy(keep).to(input.device)
    return ember.where(mask, out, ember.zeros((), dtype=input.dtype, device=input.device))


class RoIPool(nn.Module):
    """``roi_pool`` as a layer."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float) -> None:
        super().__init__()
        self.output_size = output_size
        self.spatial_scale = spatial_scale

    def forward(self, input: Tensor, rois: Tensor | list[Tensor]) -> Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(output_size={self.output_size}, "
            f"spatial_scale={self.spatial_scale})"
        )
