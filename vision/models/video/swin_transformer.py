"""Video Swin Transformer (Liu et al., 2022): the Swin Transformer with 3-D (time x height x
width) shifted windows, as torchvision.models.video.swin_transformer (the same module names,
so its Kinetics-400 checkpoints load).

Channels-last ``(B, T, H, W, C)`` features: a ``2x4x4`` patch embedding (:class:`PatchEmbed3d`,
the clip padded to whole patches), stages of blocks doing multi-head self-attention inside
``8x7x7`` windows with a learned 3-D relative position bias, every second block on windows
shifted by half a window (a cyclic ``roll`` plus a mask keeping tokens of different regions
apart), 2-D patch merging (space only) between stages, LayerNorm, average pooling and a linear
head. Any clip size works: a window larger than the features shrinks to them (and is not
shifted along that axis), and the features are padded to whole windows per attention call.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import ember
from ember import nn
from ember.nn import functional as F
from ember.tensor import Tensor

from ...transforms._presets import VideoClassification
from .._api import (
    Weights,
    WeightsEnum,
    _ovewrite_named_param,
    handle_legacy_interface,
    load_weights,
)
from ..swin_transformer import PatchMerging, SwinTransformerBlock

__all__ = [
    "SwinTransformer3d",
    "Swin3D_T_Weights",
    "Swin3D_S_Weights",
    "Swin3D_B_Weights",
    "swin3d_t",
    "swin3d_s",
    "swin3d_b",
]


def _compute_pad_size_3d(size_dhw: tuple[int, ...], patch_size: tuple[int, ...]):
    """How much to pad each of ``(T, H, W)`` at its end to whole multiples of ``patch_size``."""
    pad = [(patch_size[i] - size_dhw[i] % patch_size[i]) % patch_size[i] for i in range(3)]
    return pad[0], pad[1], pad[2]


def _get_window_and_shift_size(shift_size: list[int], size_dhw, window_size: list[int]):
    """A window that covers an axis of the features shrinks to it and does not shift."""
    for i in range(3):
        if size_dhw[i] <= window_size[i]:
            window_size[i], shift_size[i] = size_dhw[i], 0
    return window_size, shift_size


def _get_relative_position_bias(table: Tensor, index: Tensor, window_size: list[int]) -> Tensor:
    """``(1, heads, vol, vol)``; a window shrunk to small features reads the top-left block of
    the full index."""
    vol = window_size[0] * window_size[1] * window_size[2]
    bias = table[index[:vol, :vol].flatten()].view(vol, vol, -1)
    return bias.permute(2, 0, 1).contiguous().unsqueeze(0)


def _shift_mask_3d(padded: tuple[int, ...], window: list[int], shift: list[int]) -> Tensor:
    """``(num_windows, N, N)``: 0 between tokens of the same pre-shift region, -100 else."""
    mask = ember.zeros(*padded)
    regions = [((0, -w), (-w, -s), (-s, None)) for w, s in zip(window, shift)]
    count = 0
    for d0, d1 in regions[0]:
        for h0, h1 in regions[1]:
            for w0, w1 in regions[2]:
                mask[d0:d1, h0:h1, w0:w1] = count
                count += 1
    nd, nh, nw = (p // w for p, w in zip(padded, window))
    mask = mask.view(nd, window[0], nh, window[1], nw, window[2])
    mask = mask.permute(0, 2, 4, 1, 3, 5).reshape(nd * nh * nw, -1)
    mask = mask.unsqueeze(1) - mask.unsqueeze(2)
    return mask.masked_fill(mask != 0, -100.0).masked_fill(mask == 0, 0.0)


def shifted_window_attention_3d(
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
    training: bool = True,
) -> Tensor:
    """Window multi-head self-attention with a relative position bias on ``(B, T, H, W, C)``
    features, the windows shifted by ``shift_size`` (no shift where it is 0)."""
    b, t, h, w, c = input.shape
    pad = _compute_pad_size_3d((t, h, w), tuple(window_size))
    x = F.pad(input, (0, 0, 0, pad[2], 0, pad[1], 0, pad[0]))
    padded = tuple(x.shape[1:4])
    shifted = sum(shift_size) > 0
    if shifted:
        x = ember.roll(x, shifts=tuple(-s for s in shift_size), dims=(1, 2, 3))

    # partition into windows: (B * nW, Wd * Wh * Ww, C)
    nd, nh, nw = (p // ws for p, ws in zip(padded, window_size))
    num_windows, n = nd * nh * nw, window_size[0] * window_size[1] * window_size[2]
    x = x.view(b, nd, window_size[0], nh, window_size[1], nw, window_size[2], c)
    x = x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b * num_windows, n, c)

    qkv = F.linear(x, qkv_weight, qkv_bias)
    qkv = qkv.reshape(x.size(0), n, 3, num_heads, c // num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    attn = (q * (c // num_heads) ** -0.5).matmul(k.transpose(-2, -1))
    attn = attn + relative_position_bias
    if shifted:
        mask = _shift_mask_3d(padded, window_size, shift_size).to(attn.dtype)
        attn = attn.view(b, num_windows, num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
        attn = attn.view(-1, num_heads, n, n)
    attn = F.dropout(F.softmax(attn, dim=-1), p=attention_dropout, training=training)

    x = attn.matmul(v).transpose(1, 2).reshape(x.size(0), n, c)
    x = F.dropout(F.linear(x, proj_weight, proj_bias), p=dropout, training=training)

    # reverse the windows and the shift, drop the padding
    x = x.view(b, nd, nh, nw, window_size[0], window_size[1], window_size[2], c)
    x = x.permute(0, 1, 4, 2, 5, 3, 6, 7).reshape(b, *padded, c)
    if shifted:
        x = ember.roll(x, shifts=tuple(shift_size), dims=(1, 2, 3))
    return x[:, :t, :h, :w, :].contiguous()


# recorded as single calls by ember.fx (feature extraction), as torchvision's are
ember.fx.wrap("_compute_pad_size_3d")
ember.fx.wrap("_get_window_and_shift_size")
ember.fx.wrap("_get_relative_position_bias")
ember.fx.wrap("shifted_window_attention_3d")


class ShiftedWindowAttention3d(nn.Module):
    """See :func:`shifted_window_attention_3d`; owns ``qkv``, ``proj``, the
    ``(2Wd-1)(2Wh-1)(2Ww-1) x heads`` ``relative_position_bias_table`` and the
    ``(WdWhWw, WdWhWw)`` ``relative_position_index`` buffer."""

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
    ) -> None:
        super().__init__()
        if len(window_size) != 3 or len(shift_size) != 3:
            raise ValueError(
                f"window_size and shift_size must be of length 3, got {window_size} and "
                f"{shift_size}"
            )
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
        wd, wh, ww = self.window_size
        rows = (2 * wd - 1) * (2 * wh - 1) * (2 * ww - 1)
        self.relative_position_bias_table = nn.Parameter(ember.zeros(rows, self.num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def define_relative_position_index(self) -> None:
        # for each token pair of a window, the row of its (dt, dy, dx) in the bias table
        wd, wh, ww = self.window_size
        grids = ember.meshgrid(ember.arange(wd), ember.arange(wh), ember.arange(ww), indexing="ij")
        flat = ember.flatten(ember.stack(grids), 1)  # 3, Wd*Wh*Ww
        rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
        index = (rel[:, :, 0] + (wd - 1)) * ((2 * wh - 1) * (2 * ww - 1))
        index = index + (rel[:, :, 1] + (wh - 1)) * (2 * ww - 1) + (rel[:, :, 2] + (ww - 1))
        self.register_buffer("relative_position_index", index)  # kept 2-D, as torchvision

    def get_relative_position_bias(self, window_size: list[int]) -> Tensor:
        return _get_relative_position_bias(
            self.relative_position_bias_table, self.relative_position_index, window_size
        )

    def forward(self, x: Tensor) -> Tensor:
        # torchvision's steps, in its order (they are the nodes feature extraction names)
        _, t, h, w, _ = x.shape
        window, shift = _get_window_and_shift_size(
            list(self.shift_size), [t, h, w], list(self.window_size)
        )
        bias = self.get_relative_position_bias(window)
        return shifted_window_attention_3d(
            x, self.qkv.weight, self.proj.weight, bias,
            window, self.num_heads, shift_size=shift, attention_dropout=self.attention_dropout,
            dropout=self.dropout, qkv_bias=self.qkv.bias, proj_bias=self.proj.bias,
            training=self.training,
        )  # fmt: skip


class PatchEmbed3d(nn.Module):
    """Clip to patch tokens: pad ``(T, H, W)`` to whole ``patch_size`` patches, a strided
    ``Conv3d`` to ``embed_dim`` channels, channels last, then ``norm_layer``."""

    def __init__(
        self,
        patch_size: list[int],
        in_channels: int = 3,
        embed_dim: int = 96,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.tuple_patch_size = (patch_size[0], patch_size[1], patch_size[2])
        self.proj = nn.Conv3d(
            in_channels, embed_dim, kernel_size=self.tuple_patch_size,
            stride=self.tuple_patch_size,
        )  # fmt: skip
        self.norm = norm_layer(embed_dim) if norm_layer is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, ember.fx.Proxy) and x.dim() != 5:
            raise ValueError(
                f"PatchEmbed3d expects clips (N, C, T, H, W), got shape {tuple(x.shape)}"
            )
        _, _, t, h, w = x.size()
        pad = _compute_pad_size_3d((t, h, w), self.tuple_patch_size)
        x = self.proj(F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0])))
        return self.norm(x.permute(0, 2, 3, 4, 1))  # B, T, H, W, C


class SwinTransformer3d(nn.Module):
    """Video Swin Transformer: takes ``(N, 3, T, H, W)`` clips and returns
    ``(N, num_classes)`` logits. The arguments are torchvision's (``patch_size``,
    ``embed_dim``, ``depths``, ``num_heads``, ``window_size``, ``mlp_ratio``, ``dropout``,
    ``attention_dropout``, ``stochastic_depth_prob``, ``num_classes``, ``norm_layer``,
    ``block``, ``downsample_layer``, ``patch_embed``)."""

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
        num_classes: int = 400,
        norm_layer: Callable[..., nn.Module] | None = None,
        block: Callable[..., nn.Module] | None = None,
        downsample_layer: Callable[..., nn.Module] = PatchMerging,
        patch_embed: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        block = block or partial(SwinTransformerBlock, attn_layer=ShiftedWindowAttention3d)
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-5)
        patch_embed = patch_embed or PatchEmbed3d
        self.patch_embed = patch_embed(
            patch_size=patch_size, embed_dim=embed_dim, norm_layer=norm_layer
        )
        self.pos_drop = nn.Dropout(p=dropout)

        layers: list[nn.Module] = []
        total, block_id = sum(depths), 0
        for i_stage, depth in enumerate(depths):
            dim = embed_dim * 2**i_stage
            stage = []
            for i_layer in range(depth):
                # stochastic depth grows linearly with the block's index over the network
                sd_prob = stochastic_depth_prob * float(block_id) / max(total - 1, 1)
                stage.append(
                    block(
                        dim, num_heads[i_stage], window_size=window_size,
                        shift_size=[0 if i_layer % 2 == 0 else w // 2 for w in window_size],
                        mlp_ratio=mlp_ratio, dropout=dropout,
                        attention_dropout=attention_dropout, stochastic_depth_prob=sd_prob,
                        norm_layer=norm_layer, attn_layer=ShiftedWindowAttention3d,
                    )
                )  # fmt: skip
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i_stage < len(depths) - 1:
                layers.append(downsample_layer(dim, norm_layer))
        self.features = nn.Sequential(*layers)
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = norm_layer(self.num_features)
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.head = nn.Linear(self.num_features, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(self.pos_drop(self.patch_embed(x)))  # B, T, H, W, C
        x = self.avgpool(self.norm(x).permute(0, 4, 1, 2, 3))
        return self.head(ember.flatten(x, 1))


def _weights(file: str, num_params: int, metrics: tuple[float, float], ops, size) -> Weights:
    return Weights(
        url=f"https://download.pytorch.org/models/{file}.pth",
        transforms=partial(
            VideoClassification,
            crop_size=(224, 224),
            resize_size=(256,),
            mean=(0.4850, 0.4560, 0.4060),
            std=(0.2290, 0.2240, 0.2250),
        ),  # fmt: skip
        meta={
            "categories": None,
            "min_size": (1, 1),
            "min_temporal_size": 1,
            "recipe": "https://github.com/SwinTransformer/Video-Swin-Transformer#kinetics-400",
            "num_params": num_params,
            "_metrics": {"Kinetics-400": {"acc@1": metrics[0], "acc@5": metrics[1]}},
            "_ops": ops,
            "_file_size": size,
        },
    )


class Swin3D_T_Weights(WeightsEnum):
    """torchvision's Kinetics-400 checkpoint for :func:`swin3d_t` (ported from the paper)."""

    KINETICS400_V1 = _weights("swin3d_t-7615ae03", 28158070, (77.715, 93.519), 43.882, 121.543)
    DEFAULT = KINETICS400_V1


class Swin3D_S_Weights(WeightsEnum):
    """torchvision's Kinetics-400 checkpoint for :func:`swin3d_s` (ported from the paper)."""

    KINETICS400_V1 = _weights("swin3d_s-da41c237", 49816678, (79.521, 94.158), 82.841, 218.288)
    DEFAULT = KINETICS400_V1


class Swin3D_B_Weights(WeightsEnum):
    """torchvision's Kinetics-400 checkpoints for :func:`swin3d_b`: ImageNet-1k or (better)
    ImageNet-22k pretrained before Kinetics."""

    KINETICS400_V1 = _weights("swin3d_b_1k-24f7c7c6", 88048984, (79.427, 94.386), 140.667, 364.134)
    KINETICS400_IMAGENET22K_V1 = _weights(
        "swin3d_b_22k-7c6ae6fa", 88048984, (81.643, 95.574), 140.667, 364.134
    )
    DEFAULT = KINETICS400_V1


def _swin3d(embed_dim, depths, num_heads, weights, progress: bool, **kwargs: Any):
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 400)
    model = SwinTransformer3d(
        patch_size=[2, 4, 4], embed_dim=embed_dim, depths=depths, num_heads=num_heads,
        window_size=[8, 7, 7], stochastic_depth_prob=kwargs.pop("stochastic_depth_prob", 0.1),
        **kwargs,
    )  # fmt: skip
    return load_weights(model, weights, progress)


@handle_legacy_interface(lambda kwargs: Swin3D_T_Weights.KINETICS400_V1)
def swin3d_t(
    *, weights: Swin3D_T_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer3d:
    """Video Swin-T (96 channels, depths 2-2-6-2); ``kwargs`` go to
    :class:`SwinTransformer3d`."""
    weights = Swin3D_T_Weights.verify(weights)
    return _swin3d(96, [2, 2, 6, 2], [3, 6, 12, 24], weights, progress, **kwargs)


@handle_legacy_interface(lambda kwargs: Swin3D_S_Weights.KINETICS400_V1)
def swin3d_s(
    *, weights: Swin3D_S_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer3d:
    """Video Swin-S (96 channels, depths 2-2-18-2)."""
    weights = Swin3D_S_Weights.verify(weights)
    return _swin3d(96, [2, 2, 18, 2], [3, 6, 12, 24], weights, progress, **kwargs)


@handle_legacy_interface(lambda kwargs: Swin3D_B_Weights.KINETICS400_V1)
def swin3d_b(
    *, weights: Swin3D_B_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SwinTransformer3d:
    """Video Swin-B (128 channels, depths 2-2-18-2)."""
    weights = Swin3D_B_Weights.verify(weights)
    return _swin3d(128, [2, 2, 18, 2], [4, 8, 16, 32], weights, progress, **kwargs)
