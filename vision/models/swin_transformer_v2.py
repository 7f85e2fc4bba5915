"""Swin Transformer V2 (Liu et al., 2022) with torchvision's module names: the V1 network
(:mod:`.swin_transformer`) with scaled cosine attention (a learned per-head ``logit_scale``),
a continuous relative position bias from a small MLP (``cpb_mlp``) over log-spaced
coordinates, post-norm residual blocks and a patch merging that normalizes after the
reduction; 8x8 windows at 256 px."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ember
from ember import nn
from ember.tensor import Tensor

from ._api import WeightsEnum, handle_legacy_interface
from .swin_transformer import (
    ShiftedWindowAttention,
    SwinTransformer,
    SwinTransformerBlock,
    _get_relative_position_bias,
    _patch_merging_pad,
    _swin,
    _weights,
    shifted_window_attention,
)

ember.fx.wrap("_patch_merging_pad")  # single calls in traced graphs, as torchvision's
ember.fx.wrap("_get_relative_position_bias")
ember.fx.wrap("shifted_window_attention")

# (the V2 building blocks stay importable from this module, as torchvision keeps them out of
# torchvision.models)
__all__ = [
    "Swin_V2_B_Weights",
    "Swin_V2_S_Weights",
    "Swin_V2_T_Weights",
    "swin_v2_b",
    "swin_v2_s",
    "swin_v2_t",
]


class PatchMergingV2(nn.Module):
    """``(..., H, W, C)`` -> ``(..., H/2, W/2, 2C)``: concatenate each 2x2 cell, linear,
    then norm (V1 normalizes before the linear)."""

    def __init__(self, dim: int, norm_layer: Callable[..., nn.Module] = nn.LayerNorm):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(2 * dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(self.reduction(_patch_merging_pad(x)))


class ShiftedWindowAttentionV2(ShiftedWindowAttention):
    """Window attention with cosine similarity scaled by ``exp(logit_scale)`` (at most 100)
    and a position bias ``16 sigmoid(cpb_mlp(coords))``, the MLP evaluated on each relative
    offset ``(dy, dx)`` mapped to ``sign(t) log2(1 + |t|) / 3`` with ``t`` in ``[-8, 8]``."""

    def __init__(
        self,
        dim: int,
        window_size: list[int],
        shift_size: list[int],
        num_heads: int,
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attention_dropout: float = 0.0,
        dropout: float = 0.0,
    ):
        super().__init__(
            dim, window_size, shift_size, num_heads, qkv_bias=qkv_bias, proj_bias=proj_bias,
            attention_dropout=attention_dropout, dropout=dropout,
        )  # fmt: skip
        self.logit_scale = nn.Parameter(ember.log(10 * ember.ones((num_heads, 1, 1))))
        self.cpb_mlp = nn.Sequential(
            nn.Linear(2, 512, bias=True), nn.ReLU(inplace=True),
            nn.Linear(512, num_heads, bias=False),
        )  # fmt: skip
        if qkv_bias:
            length = self.qkv.bias.numel() // 3
            with ember.no_grad():
                self.qkv.bias[length : 2 * length].zero_()

    def define_relative_position_bias_table(self) -> None:
        # V2 has no bias table: the MLP's inputs, one (dy, dx) row per relative offset
        wh, ww = self.window_size
        dy = ember.arange(-(wh - 1), wh, dtype=ember.float32) / max(wh - 1, 1)
        dx = ember.arange(-(ww - 1), ww, dtype=ember.float32) / max(ww - 1, 1)
        table = ember.stack(ember.meshgrid(dy, dx, indexing="ij")).permute(1, 2, 0)
        table = table.contiguous().unsqueeze(0) * 8  # 1, 2Wh-1, 2Ww-1, 2 in [-8, 8]
        table = ember.sign(table) * ember.log2(ember.abs(table) + 1.0) / 3.0
        self.register_buffer("relative_coords_table", table)

    def get_relative_position_bias(self) -> Tensor:
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = _get_relative_position_bias(table, self.relative_position_index, self.window_size)
        return 16 * ember.sigmoid(bias)

    def forward(self, x: Tensor) -> Tensor:
        bias = self.get_relative_position_bias()  # first, as torchvision (traced graph order)
        return shifted_window_attention(
            x, self.qkv.weight, self.proj.weight, bias,
            self.window_size, self.num_heads, shift_size=self.shift_size,
            attention_dropout=self.attention_dropout, dropout=self.dropout,
            qkv_bias=self.qkv.bias, proj_bias=self.proj.bias, logit_scale=self.logit_scale,
            training=self.training,
        )  # fmt: skip


class SwinTransformerBlockV2(SwinTransformerBlock):
    """Post-norm residual block: ``x + drop(norm1(attn(x)))``, then
    ``x + drop(norm2(mlp(x)))`` (V1 normalizes the branch inputs instead)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: list[int],
        shift_size: list[int],
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        stochastic_depth_prob: float = 0.0,
        norm_layer: Callable[..., nn.Module] = nn.LayerNorm,
        attn_layer: Callable[..., nn.Module] = ShiftedWindowAttentionV2,
    ):
        super().__init__(
            dim, num_heads, window_size, shift_size, mlp_ratio=mlp_ratio, dropout=dropout,
            attention_dropout=attention_dropout, stochastic_depth_prob=stochastic_depth_prob,
            norm_layer=norm_layer, attn_layer=attn_layer,
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.stochastic_depth(self.norm1(self.attn(x)))
        return x + self.stochastic_depth(self.norm2(self.mlp(x)))


class Swin_V2_T_Weights(WeightsEnum):
    """Pretrained weights for :func:`swin_v2_t` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _weights("swin_v2_t-b137f0e2.pth", 28351570, 260, 256)
    DEFAULT = IMAGENET1K_V1


class Swin_V2_S_Weights(WeightsEnum):
    """Pretrained weights for :func:`swin_v2_s` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _weights("swin_v2_s-637d8ceb.pth", 49737442, 260, 256)
    DEFAULT = IMAGENET1K_V1


class Swin_V2_B_Weights(WeightsEnum):
    """Pretrained weights for :func:`swin_v2_b` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _weights("swin_v2_b-781e5279.pth", 87930848, 272, 256)
    DEFAULT = IMAGENET1K_V1


def _swin_v2(embed_dim, depths, num_heads, sd_prob, weights, progress, **kwargs: Any):
    return _swin(
        embed_dim, depths, num_heads, sd_prob, weights, progress, window_size=[8, 8],
        block=SwinTransformerBlockV2, downsample_layer=PatchMergingV2, **kwargs,
    )  # fmt: skip


@handle_legacy_interface(Swin_V2_T_Weights)
def swin_v2_t(
    *, weights: Swin_V2_T_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-V2-T (96 channels, depths 2-2-6-2, 8x8 windows); ``kwargs`` go to
    :class:`SwinTransformer`."""
    weights = Swin_V2_T_Weights.verify(weights)
    return _swin_v2(96, [2, 2, 6, 2], [3, 6, 12, 24], 0.2, weights, progress, **kwargs)


@handle_legacy_interface(Swin_V2_S_Weights)
def swin_v2_s(
    *, weights: Swin_V2_S_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-V2-S (96 channels, depths 2-2-18-2, 8x8 windows)."""
    weights = Swin_V2_S_Weights.verify(weights)
    return _swin_v2(96, [2, 2, 18, 2], [3, 6, 12, 24], 0.3, weights, progress, **kwargs)


@handle_legacy_interface(Swin_V2_B_Weights)
def swin_v2_b(
    *, weights: Swin_V2_B_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-V2-B (128 channels, depths 2-2-18-2, 8x8 windows)."""
    weights = Swin_V2_B_Weights.verify(weights)
    return _swin_v2(128, [2, 2, 18, 2], [4, 8, 16, 32], 0.5, weights, progress, **kwargs)
