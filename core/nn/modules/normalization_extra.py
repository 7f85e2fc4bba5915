"""Cross-channel normalisation layers: ``LocalResponseNorm`` and the legacy ``CrossMapLRN2d``;
the distance layers ``CosineSimilarity`` and ``PairwiseDistance``; ``ChannelShuffle``."""

from __future__ import annotations

from ... import ops
from ...tensor import Tensor
from .. import functional as F
from ..module import Module

__all__ = [
    "LocalResponseNorm",
    "CrossMapLRN2d",
    "CosineSimilarity",
    "PairwiseDistance",
    "ChannelShuffle",
]


class LocalResponseNorm(Module):
    r"""Normalise each channel by the squares of its ``size`` neighbours (AlexNet's LRN)."""

    __constants__ = ["size", "alpha", "beta", "k"]

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, input: Tensor) -> Tensor:
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class CrossMapLRN2d(Module):
    r"""Legacy (Lua Torch) cross-map LRN over (N, C, H, W): a running channel-window sum of
    squares, reproduced step for step (its window update differs from LocalResponseNorm's)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1) -> None:
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, input: Tensor) -> Tensor:
        if input.dim() != 4:
            raise ValueError(f"CrossMapLRN2d: Expected input to be 4D, got {input.dim()}D instead.")
        c = input.shape[1]
        sq = input * input
        pre_pad = int((self.size - 1) / 2 + 1)
        first = sq[:, 0]
        for j in range(1, min(pre_pad, c)):
            first = first + sq[:, j]
        scales = [first]
        for j in range(1, c):
            cur = scales[-1]
            if j < c - pre_pad + 1:
                cur = cur + sq[:, j + pre_pad - 1]
            if j > pre_pad:
                cur = cur - sq[:, j - pre_pad]
            scales.append(cur)
        scale = ops.stack(scales, 1) * (self.alpha / self.size) + self.k
        return input * scale ** (-self.beta)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


class CosineSimilarity(Module):
    r"""Cosine similarity of ``x1`` and ``x2`` along ``dim``."""

    __constants__ = ["dim", "eps"]

    def __init__(self, dim: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return F.cosine_similarity(x1, x2, self.dim, self.eps)


class PairwiseDistance(Module):
    r"""The :math:`p`-norm distance between rows of ``x1`` and ``x2`` (``eps`` added to the
    difference)."""

    __constants__ = ["norm", "eps", "keepdim"]

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> None:
        super().__init__()
        self.norm, self.eps, self.keepdim = p, eps, keepdim

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return F.pairwise_distance(x1, x2, self.norm, self.eps, self.keepdim)


class ChannelShuffle(Module):
    r"""Interleave the channels of ``groups`` groups (ShuffleNet)."""

    __constants__ = ["groups"]

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, input: Tensor) -> Tensor:
        return F.channel_shuffle(input, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"
