"""Swin Transformer v1 (Liu et al., 2021) with torchvision's module names.

Channels-last ``(B, H, W, C)`` features: a 4x4 patch embedding, stages of blocks doing
multi-head self-attention inside non-overlapping 7x7 windows with a learned relative position
bias, every second block on windows shifted by half a window (a cyclic ``roll`` plus a mask
that keeps tokens from different image regions apart), patch merging (2x2 -> 4C -> 2C) between
stages, LayerNorm, average pooling and a linear head. Inputs need not be multiples of the
window: feature maps are padded per attention call as in torchvision.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import ember
from ember import nn
from ember.nn import functional as F
from ember.tensor import Tensor

from ..ops.misc import MLP, Permute
from ._api import (
    Weights,
    WeightsEnum,
    _imagenet_transforms,
    _ovewrite_named_param,
    handle_legacy_interface,
    load_weights,
)
from ._ops import StochasticDepth

__all__ = [
    "SwinTransformer",
    "Swin_T_Weights",
    "Swin_S_Weights",
    "Swin_B_Weights",
    "swin_t",
    "swin_s",
    "swin_b",
]


def _patch_merging_pad(x: Tensor) -> Tensor:
    h, w = x.shape[-3], x.shape[-2]
    x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
    # the four pixels of each 2x2 cell, in torchvision's (and the checkpoints') order
    parts = [x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :]]
    return ember.cat(parts + [x[..., 1::2, 1::2, :]], -1)


def _get_relative_position_bias(table: Tensor, index: Tensor, window_size: list[int]) -> Tensor:
    """``(1, heads, Wh*Ww, Wh*Ww)``: each token pair's row of the bias ``table``."""
    n = window_size[0] * window_size[1]
    bias = table[index].view(n, n, -1)
    return bias.permute(2, 0, 1).contiguous().unsqueeze(0)


# recorded as single calls by ember.fx (feature extraction), as torchvision's are
ember.fx.wrap("_patch_merging_pad")
ember.fx.wrap("_get_relative_position_bias")


class PatchMerging(nn.Module):
    """``(..., H, W, C)`` -> ``(..., H/2, W/2, 2C)``: concatenate each 2x2 cell, norm, linear."""

    def __init__(self, dim: int, norm_layer: Callable[..., nn.Module] = nn.LayerNorm):
        super().__init__()
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = norm_layer(4 * dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.reduction(self.norm(_patch_merging_pad(x)))


def _shift_mask(pad_h: int, pad_w: int, window: list[int], shift: list[int], num_windows: int):
    """``(num_windows, N, N)``: 0 between tokens of the same pre-shift region, -100 else."""
    mask = ember.zeros(pad_h, pad_w)
    h_slices = ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None))
    w_slices = ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None))
    count = 0
    for h0, h1 in h_slices:
        for w0, w1 in w_slices:
            mask[h0:h1, w0:w1] = count
            count += 1
    mask = mask.view(pad_h // window[0], window[0], pad_w // window[1], window[1])
    mask = mask.permute(0, 2, 1, 3).reshape(num_windows, window[0] * window[1])
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def shifted_window_attention(
    input: Tensor,
    qkv_weight: Tensor,
    proj_weight: Tensor,
    relative_position_bias: Tensor,
    window_size: list[int],
    num_heads: int,
    shift_size: list[int],
    attention_dropout: float = 0.0,
    dropout: float = 0.0,
    qkv_bias: Tensor | None = None,
    proj_bias: Tensor | None = None,
    logit_scale: Tensor | None = None,
    training: bool = True,
) -> Tensor:
    """Window multi-head self-attention with relative position bias on ``(B, H, W, C)``,
    shifted by ``shift_size`` (no shift where a window covers the whole padded map). With
    ``logit_scale`` (Swin V2) the attention is the cosine of ``q`` and ``k`` times
    ``exp(min(logit_scale, log 100))`` and the keys' bias is zero."""
    b, h, w, c = input.shape
    pad_r = (window_size[1] - w % window_size[1]) % window_size[1]
    pad_b = (window_size[0] - h % window_size[0]) % window_size[0]
    x = F.pad(input, (0, 0, 0, pad_r, 0, pad_b))
    _, pad_h, pad_w, _ = x.shape
    shift = [0 if window_size[0] >= pad_h else shift_size[0]]
    shift.append(0 if window_size[1] >= pad_w else shift_size[1])
    if sum(shift) > 0:
        x = ember.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))

    # partition into windows: (B * nW, Wh * Ww, C)
    nh, nw = pad_h // window_size[0], pad_w // window_size[1]
    num_windows = nh * nw
    n = window_size[0] * window_size[1]
    x = x.view(b, nh, window_size[0], nw, window_size[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b * num_windows, n, c)

    if logit_scale is not None and qkv_bias is not None:
        # V2 has no key bias: zero it (out of place, so the parameter keeps its value)
        length = qkv_bias.numel() // 3
        keep = ember.ones_like(qkv_bias)
        keep[length : 2 * length] = 0
        qkv_bias = qkv_bias * keep
    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(x.size(0), n, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    if logit_scale is not None:
        attn = F.normalize(q, dim=-1).matmul(F.normalize(k, dim=-1).transpose(-2, -1))
        attn = attn * ember.clamp(logit_scale, max=math.log(100.0)).exp()
    else:
        attn = (q * (c // num_heads) ** -0.5).matmul(k.transpose(-2, -1))
    attn = attn + relative_position_bias
    if sum(shift) > 0:
        mask = _shift_mask(pad_h, pad_w, window_size, shift, num_windows).to(attn.dtype)
        attn = attn.view(x.size(0) // num_windows, num_windows, num_heads, n, n)
        attn = (attn + mask.unsqueeze(1).unsqueeze(0)).view(-1, num_heads, n, n)
    attn = F.dropout(F.softmax(attn, dim=-1), p=attention_dropout, training=training)

    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), n, c)
    x = F.dropout(F.linear(x, proj_weight, proj_bias), p=dropout, training=training)

    # reverse the windows and the shift, drop the padding
    x = x.view(b, nh, nw, window_size[0], window_size[1], c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, pad_h, pad_w, c)
    if sum(shift) > 0:
        x = ember.roll(x, shifts=(shift[0], shift[1]), dims=(1, 2))
    return x[:, :h, :w, :].contiguous()


ember.fx.wrap("shifted_window_attention")


class ShiftedWindowAttention(nn.Module):
    """See :func:`shifted_window_attention`; owns ``qkv``, ``proj`` and the
    ``(2Wh-1)(2Ww-1) x heads`` ``relative_position_bias_table``."""

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
        super().__init__()
        if len(window_size) != 2 or len(shift_size) != 2:
            raise ValueError("window_size and shift_size must be of length 2")
        self.window_size = list(window_size)
        self.shift_size = list(shift_size)
        self.num_heads = num_heads
        self.attention_dropout = attention_dropout
        self.dropout = dropout
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.define_relative_position_bias_table()
        self.define_relative_position_index()

    def define_relative_position_bias_table(self) -> None:
        wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(
            ember.zeros((2 * wh - 1) * (2 * ww - 1), self.num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def define_relative_position_index(self) -> None:
        # for each token pair of a window, the row of its (dy, dx) in the bias table
        wh, ww = self.window_size
        coords = ember.stack(ember.meshgrid(ember.arange(wh), ember.arange(ww), indexing="ij"))
        flat = ember.flatten(coords, 1)  # 2, Wh*Ww
        rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
        index = (rel[:, :, 0] + (wh - 1)) * (2 * ww - 1) + (rel[:, :, 1] + (ww - 1))
        self.register_buffer("relative_position_index", index.flatten())

    def get_relative_position_bias(self) -> Tensor:
        return _get_relative_position_bias(
            self.relative_position_bias_table, self.relative_position_index, self.window_size
        )

    def forward(self, x: Tensor) -> Tensor:
        bias = self.get_relative_position_bias()  # first, as torchvision (traced graph order)
        return shifted_window_attention(
            x,
            self.qkv.weight,
            self.proj.weight,
            bias,
            self.window_size,
            self.num_heads,
            shift_size=self.shift_size,
            attention_dropout=self.attention_dropout,
            dropout=self.dropout,
            qkv_bias=self.qkv.bias,
            proj_bias=self.proj.bias,
            training=self.training,
        )


class SwinTransformerBlock(nn.Module):
    """Pre-norm residual block: window attention, then a GELU MLP (``mlp_ratio`` x wide),
    each behind stochastic depth."""

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
        attn_layer: Callable[..., nn.Module] = ShiftedWindowAttention,
    ):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = attn_layer(
            dim,
            window_size,
            shift_size,
            num_heads,
            attention_dropout=attention_dropout,
            dropout=dropout,
        )
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.norm2 = norm_layer(dim)
        hidden = [int(dim * mlp_ratio), dim]
        self.mlp = MLP(dim, hidden, activation_layer=nn.GELU, inplace=None, dropout=dropout)
        for m in self.mlp.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.normal_(m.bias, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.stochastic_depth(self.attn(self.norm1(x)))
        return x + self.stochastic_depth(self.mlp(self.norm2(x)))


class SwinTransformer(nn.Module):
    """Swin Transformer: takes ``(N, 3, H, W)`` images and returns ``(N, num_classes)`` logits.

    Args:
        patch_size: the patch embedding's kernel and stride (2 ints).
        embed_dim: channels after the patch embedding (doubled at each merge).
        depths: blocks per stage.
        num_heads: attention heads per stage.
        window_size: the attention window (2 ints).
        mlp_ratio: MLP width as a multiple of the channels.
        dropout: dropout after attention projections and in the MLPs.
        attention_dropout: dropout on attention weights.
        stochastic_depth_prob: the last block's drop probability (linear from 0).
        num_classes: the number of output classes.
        norm_layer: the normalisation layer (``LayerNorm(eps=1e-5)``).
        block: the block class.
        downsample_layer: the patch-merging class.
    """

    def __init__(
        self,
        patch_size: list[int],
        embed_dim: int,
        depths: list[int],
        num_heads: list[int],
        window_size: list[int],
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        stochastic_depth_prob: float = 0.1,
        num_classes: int = 1000,
        norm_layer: Callable[..., nn.Module] | None = None,
        block: Callable[..., nn.Module] | None = None,
        downsample_layer: Callable[..., nn.Module] = PatchMerging,
    ):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(
                f"depths and num_heads need one entry per stage, got {depths} and {num_heads}"
            )
        self.num_classes = num_classes
        block = block or SwinTransformerBlock
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-5)

        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(3, embed_dim, kernel_size=tuple(patch_size), stride=tuple(patch_size)),
                Permute([0, 2, 3, 1]),
                norm_layer(embed_dim),
            )
        ]
        total, block_id = sum(depths), 0
        for i_stage, depth in enumerate(depths):
            dim = embed_dim * 2**i_stage
            stage: list[nn.Module] = []
            for i_layer in range(depth):
                # stochastic depth grows linearly with the block's position in the network
                sd_prob = stochastic_depth_prob * float(block_id) / (total - 1)
                stage.append(
                    block(
                        dim,
                        num_heads[i_stage],
                        window_size=window_size,
                        shift_size=[0 if i_layer % 2 == 0 else w // 2 for w in window_size],
                        mlp_ratio=mlp_ratio,
                        dropout=dropout,
                        attention_dropout=attention_dropout,
                        stochastic_depth_prob=sd_prob,
                        norm_layer=norm_layer,
                    )
                )
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i_stage < len(depths) - 1:
                layers.append(downsample_layer(dim, norm_layer))
        self.features = nn.Sequential(*layers)

        num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = norm_layer(num_features)
        self.permute = Permute([0, 3, 1, 2])  # B H W C -> B C H W
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.head = nn.Linear(num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.permute(self.norm(self.features(x)))
        return self.head(self.flatten(self.avgpool(x)))


def _swin(
    embed_dim: int,
    depths: list[int],
    num_heads: list[int],
    stochastic_depth_prob: float,
    weights: WeightsEnum | None,
    progress: bool,
    window_size: list[int] = (7, 7),
    **kwargs: Any,
) -> SwinTransformer:
    """V1 (7x7 windows) and, with V2's block, merging and 8x8 windows, V2."""
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    model = SwinTransformer(
        patch_size=[4, 4],
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        window_size=list(window_size),
        stochastic_depth_prob=stochastic_depth_prob,
        **kwargs,
    )
    return load_weights(model, weights, progress)


def _weights(file: str, num_params: int, resize_size: int, crop_size: int = 224) -> Weights:
    from ember.vision.transforms.functional import InterpolationMode

    return Weights(
        url="https://download.pytorch.org/models/" + file,
        transforms=_imagenet_transforms(crop_size, resize_size, InterpolationMode.BICUBIC),
        meta={"num_params": num_params, "min_size": (crop_size, crop_size), "categories": None},
    )


class Swin_T_Weights(WeightsEnum):
    """Pretrained weights for :func:`swin_t` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _weights("swin_t-704ceda3.pth", 28288354, 232)
    DEFAULT = IMAGENET1K_V1


class Swin_S_Weights(WeightsEnum):
    """Pretrained weights for :func:`swin_s` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _weights("swin_s-5e29d889.pth", 49606258, 246)
    DEFAULT = IMAGENET1K_V1


class Swin_B_Weights(WeightsEnum):
    """Pretrained weights for :func:`swin_b` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _weights("swin_b-68c6b09e.pth", 87768224, 238)
    DEFAULT = IMAGENET1K_V1


@handle_legacy_interface(Swin_T_Weights)
def swin_t(
    *, weights: Swin_T_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-T (96 channels, depths 2-2-6-2); ``kwargs`` go to :class:`SwinTransformer`."""
    weights = Swin_T_Weights.verify(weights)
    return _swin(96, [2, 2, 6, 2], [3, 6, 12, 24], 0.2, weights, progress, **kwargs)


@handle_legacy_interface(Swin_S_Weights)
def swin_s(
    *, weights: Swin_S_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-S (96 channels, depths 2-2-18-2); ``kwargs`` go to :class:`SwinTransformer`."""
    weights = Swin_S_Weights.verify(weights)
    return _swin(96, [2, 2, 18, 2], [3, 6, 12, 24], 0.3, weights, progress, **kwargs)


@handle_legacy_interface(Swin_B_Weights)
def swin_b(
    *, weights: Swin_B_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer:
    """Swin-B (128 channels, depths 2-2-18-2); ``kwargs`` go to :class:`SwinTransformer`."""
    weights = Swin_B_Weights.verify(weights)
    return _swin(128, [2, 2, 18, 2], [4, 8, 16, 32], 0.5, weights, progress, **kwargs)
