"""``flow_to_image``: colour-code an optical flow field with the Middlebury colour wheel
(Baker et al., ICCV 2007): hue gives the direction, saturation the magnitude relative to the
largest vector of the batch."""

from __future__ import annotations

import ember
from ember.tensor import Tensor

__all__ = ["flow_to_image"]

# the colour wheel's six ramps: (number of hues, start colour, the channel that ramps, up?)
_RAMPS = (
    (15, (255, 0, 0), 1, True),  # red -> yellow
    (6, (255, 255, 0), 0, False),  # yellow -> green
    (4, (0, 255, 0), 2, True),  # green -> cyan
    (11, (0, 255, 255), 1, False),  # cyan -> blue
    (13, (0, 0, 255), 0, True),  # blue -> magenta
    (6, (255, 0, 255), 2, False),  # magenta -> red
)


def _make_colorwheel() -> Tensor:
    """``(55, 3)`` float32 RGB colours in [0, 255], the hues around the wheel."""
    rows = []
    for n, start, channel, up in _RAMPS:
        for i in range(n):
            step = (255 * i) // n  # floor(255 * i / n)
            rgb = list(start)
            rgb[channel] = step if up else 255 - step
            rows.append(rgb)
    return ember.tensor(rows, dtype=ember.float32)


@ember.no_grad()
def _normalized_flow_to_image(flow: Tensor) -> Tensor:
    n, _, h, w = flow.shape
    wheel = _make_colorwheel().to(flow.device)
    ncols = wheel.shape[0]
    norm = ember.sum(flow.pow(2), dim=1).sqrt()
    angle = ember.atan2(-flow[:, 1], -flow[:, 0]) / ember.pi  # in [-1, 1]
    fk = (angle + 1) / 2 * (ncols - 1)
    k0 = ember.floor(fk).long()
    k1 = ember.where(k0 + 1 == ncols, ember.zeros_like(k0), k0 + 1)
    f = fk - k0
    channels = []
    for c in range(3):
        col0, col1 = wheel[:, c][k0] / 255.0, wheel[:, c][k1] / 255.0
        col = 1 - norm * (1 - ((1 - f) * col0 + f * col1))
        channels.append(ember.floor(255 * col))
    return ember.stack(channels, dim=1).to(ember.uint8)


def flow_to_image(flow: Tensor) -> Tensor:
    """An optical flow ``(2, H, W)`` or ``(N, 2, H, W)`` (float32) as a uint8 RGB image
    ``(3, H, W)`` / ``(N, 3, H, W)``: the direction picks the hue, the length relative to the
    batch's longest vector the saturation (white where there is no motion)."""
    if not isinstance(flow, Tensor):
        raise TypeError(f"flow should be a Tensor, got {type(flow).__name__}")
    if flow.dtype != ember.float32:
        raise ValueError(f"Flow should be of dtype torch.float, got {flow.dtype}.")
    orig = tuple(flow.shape)
    if flow.ndim == 3:
        flow = flow[None]
    if flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(f"Input flow should have shape (2, H, W) or (N, 2, H, W), got {orig}.")
    max_norm = ember.sum(flow.pow(2), dim=1).sqrt().max()
    img = _normalized_flow_to_image(flow / (max_norm + ember.finfo(flow.dtype).eps))
    return img[0] if len(orig) == 3 else img
