"""Helpers of the optical-flow models: sampling at pixel coordinates, the coordinate grid and
flow upsampling (bilinear, or RAFT's learned convex combination)."""

from __future__ import annotations

import ember
import ember.nn.functional as F
from ember.tensor import Tensor

__all__ = ["grid_sample", "make_coords_grid", "upsample_flow"]


def grid_sample(
    img: Tensor, absolute_grid: Tensor, mode: str = "bilinear", align_corners: bool | None = None
) -> Tensor:
    """:func:`ember.nn.functional.grid_sample` with pixel coordinates ``(x, y)`` in the last
    dimension of ``absolute_grid`` instead of [-1, 1] ones (``x = 0`` the first column and
    ``x = W - 1`` the last, as ``align_corners=True`` reads them)."""
    h, w = img.shape[-2:]
    x, y = absolute_grid.split([1, 1], dim=-1)
    x = 2 * x / (w - 1) - 1
    if h > 1:  # a one-row image (RAFT-Stereo's 1-D correlation) keeps y as given
        y = 2 * y / (h - 1) - 1
    return F.grid_sample(img, ember.cat([x, y], dim=-1), mode=mode, align_corners=align_corners)


def make_coords_grid(batch_size: int, h: int, w: int, device="cpu") -> Tensor:
    """``(batch_size, 2, h, w)`` float32 pixel coordinates: channel 0 is x (the column),
    channel 1 is y (the row)."""
    ys, xs = ember.meshgrid(
        ember.arange(h, device=device), ember.arange(w, device=device), indexing="ij"
    )
    coords = ember.stack([xs, ys], dim=0).float()
    return coords[None].repeat(batch_size, 1, 1, 1)


def upsample_flow(flow: Tensor, up_mask: Tensor | None = None, factor: int = 8) -> Tensor:
    """Upsample a ``(N, 2, h, w)`` flow by ``factor`` (its values scale with it).

    Without ``up_mask``: bilinear interpolation (``align_corners=True``). With ``up_mask``
    ``(N, 9 * factor**2, h, w)``: each fine pixel is a convex combination (softmax over 9
    weights) of the 3x3 coarse neighbourhood of its coarse pixel (RAFT, appendix B).
    """
    n, c, h, w = flow.shape
    if up_mask is None:
        return factor * F.interpolate(
            flow, size=(h * factor, w * factor), mode="bilinear", align_corners=True
        )
    if tuple(up_mask.shape) != (n, 9 * factor * factor, h, w):
        raise ValueError(
            f"up_mask should have shape {(n, 9 * factor * factor, h, w)} for a flow of shape "
            f"{tuple(flow.shape)} and factor {factor}, got {tuple(up_mask.shape)}"
        )
    weights = ember.softmax(up_mask.view(n, 1, 9, factor, factor, h, w), dim=2)
    neighbours = F.unfold(factor * flow, kernel_size=3, padding=1).view(n, c, 9, 1, 1, h, w)
    up = ember.sum(weights * neighbours, dim=2)  # n, c, factor, factor, h, w
    return up.permute(0, 1, 4, 2, 5, 3).reshape(n, c, h * factor, w * factor)
