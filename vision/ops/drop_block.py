"""DropBlock (Ghiasi et al. 2018): drop contiguous square regions of feature maps."""

from __future__ import annotations

import ember
from ember import Tensor, nn
from ember.nn import functional as F

__all__ = ["DropBlock2d", "DropBlock3d", "drop_block2d", "drop_block3d"]


def _drop_block(input, p, block_size, inplace, eps, training, dims):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if input.dim() != dims + 2:
        raise ValueError(f"input should be {dims + 2} dimensional, got {tuple(input.shape)}")
    if not training or p == 0.0:
        return input
    n, c, *spatial = input.shape
    block_size = min(block_size, *spatial)
    # the seed rate gamma that makes a fraction p of the units dropped once blocks grow
    valid = 1
    for s in spatial:
        valid *= s - block_size + 1
    total = 1
    for s in spatial:
        total *= s
    gamma = (p * total) / ((block_size**dims) * valid)
    seeds = ember.empty(
        (n, c, *[s - block_size + 1 for s in spatial]), dtype=input.dtype, device=input.device
    ).bernoulli_(gamma)
    seeds = F.pad(seeds, [block_size // 2] * (2 * dims), value=0)
    pool = F.max_pool2d if dims == 2 else F.max_pool3d
    noise = 1 - pool(seeds, kernel_size=block_size, stride=1, padding=block_size // 2)
    scale = noise.numel() / (eps + noise.sum())
    if inplace:
        return input.mul_(noise).mul_(scale)
    return input * noise * scale


def drop_block2d(
    input: Tensor, p: float, block_size: int, inplace: bool = False, eps: float = 1e-6,
    training: bool = True,
) -> Tensor:  # fmt: skip
    """Drop ``block_size`` x ``block_size`` regions of an ``(N, C, H, W)`` input so that about
    a fraction ``p`` of it is zero, rescaling the rest; identity when not training."""
    return _drop_block(input, p, block_size, inplace, eps, training, 2)


def drop_block3d(
    input: Tensor, p: float, block_size: int, inplace: bool = False, eps: float = 1e-6,
    training: bool = True,
) -> Tensor:  # fmt: skip
    """``drop_block2d`` for ``(N, C, D, H, W)`` inputs (cubic blocks)."""
    return _drop_block(input, p, block_size, inplace, eps, training, 3)


class DropBlock2d(nn.Module):
    """``drop_block2d`` as a layer."""

    def __init__(self, p: float, block_size: int, inplace: bool = False, eps: float = 1e-6):
        super().__init__()
        self.p, self.block_size, self.inplace, self.eps = p, block_size, inplace, eps

    def forward(self, input: Tensor) -> Tensor:
        return drop_block2d(input, self.p, self.block_size, self.inplace, self.eps, self.training)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(p={self.p}, block_size={self.block_size}, "
            f"inplace={self.inplace})"
        )


class DropBlock3d(DropBlock2d):
    """``drop_block3d`` as a layer."""

    def forward(self, input: Tensor) -> Tensor:
        return drop_block3d(input, self.p, self.block_size, self.inplace, self.eps, self.training)
