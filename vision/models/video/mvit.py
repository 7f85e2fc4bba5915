"""Multiscale Vision Transformers: MViT v1 (Fan et al., 2021) and v2 (Li et al., 2022), as
torchvision.models.video.mvit (the same module names, so its Kinetics-400 checkpoints load).

Pooling attention: queries, keys and values are pooled (a depthwise strided 3-D convolution
and a LayerNorm per head) before the attention, so the token grid shrinks stage by stage while
the channels grow. v2 adds decomposed relative positional embeddings (``rel_pos_t/h/w``) and a
residual connection from the pooled queries. Inputs are clips ``(N, 3, T, H, W)`` of exactly
the size the model was built for (``spatial_size``, ``temporal_size``: 224x224x16 by default).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import ember
from ember import nn
from ember.fx import Proxy
from ember.tensor import Tensor

from ...transforms._presets import VideoClassification
from .._api import (
    Weights,
    WeightsEnum,
    _ovewrite_named_param,
    handle_legacy_interface,
    load_weights,
)
from ._mvit_layers import (  # noqa: F401  (torchvision has the layers in this module)
    MSBlockConfig,
    MultiscaleAttention,
    MultiscaleBlock,
    Pool,
    PositionalEncoding,
    _add_rel_pos,
    _rel_index,
    _unsqueeze,
)

# recorded as one call by ember.fx, as torchvision's (wrapped where it is called from)
ember.fx.wrap("_unsqueeze")

__all__ = ["MViT", "MViT_V1_B_Weights", "mvit_v1_b", "MViT_V2_S_Weights", "mvit_v2_s"]


class MViT(nn.Module):
    """A multiscale vision transformer: a ``patch_embed_kernel`` convolution patchifies the
    clip, the class token and positions are added, ``block_setting`` multiscale blocks run,
    and a LayerNorm, dropout and a linear head classify the class token. Takes
    ``(N, 3, T, H, W)`` (or ``(N, 3, H, W)`` as ``T = 1``) of exactly ``temporal_size`` x
    ``spatial_size``; returns ``(N, num_classes)`` logits. The arguments are torchvision's."""

    def __init__(
        self,
        spatial_size: tuple[int, int],
        temporal_size: int,
        block_setting: Sequence[MSBlockConfig],
        residual_pool: bool,
        residual_with_cls_embed: bool,
        rel_pos_embed: bool,
        proj_after_attn: bool,
        dropout: float = 0.5,
        attention_dropout: float = 0.0,
        stochastic_depth_prob: float = 0.0,
        num_classes: int = 400,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
        patch_embed_kernel: tuple[int, int, int] = (3, 7, 7),
        patch_embed_stride: tuple[int, int, int] = (2, 4, 4),
        patch_embed_padding: tuple[int, int, int] = (1, 3, 3),
    ) -> None:
        super().__init__()
        total = len(block_setting)
        if total == 0:
            raise ValueError("The configuration parameter can't be empty.")
        block = block or MultiscaleBlock
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        self.conv_proj = nn.Conv3d(
            3, block_setting[0].input_channels, kernel_size=patch_embed_kernel,
            stride=patch_embed_stride, padding=patch_embed_padding,
        )  # fmt: skip
        sizes = (temporal_size, *spatial_size)
        input_size = [s // st for s, st in zip(sizes, self.conv_proj.stride)]
        if min(input_size) < 1:
            raise ValueError(
                f"MViT: a {temporal_size}x{spatial_size[0]}x{spatial_size[1]} clip is smaller "
                f"than one {tuple(patch_embed_stride)} patch"
            )
        self.pos_encoding = PositionalEncoding(
            block_setting[0].input_channels, (input_size[1], input_size[2]), input_size[0],
            rel_pos_embed,
        )  # fmt: skip
        self.blocks = nn.ModuleList()
        for i, cnf in enumerate(block_setting):
            sd_prob = stochastic_depth_prob * i / (total - 1.0) if total > 1 else 0.0
            self.blocks.append(
                block(
                    input_size=input_size,
                    cnf=cnf,
                    residual_pool=residual_pool,
                    residual_with_cls_embed=residual_with_cls_embed,
                    rel_pos_embed=rel_pos_embed,
                    proj_after_attn=proj_after_attn,
                    dropout=attention_dropout,
                    stochastic_depth_prob=sd_prob,
                    norm_layer=norm_layer,
                )  # fmt: skip
            )
            if len(cnf.stride_q) > 0:
                input_size = [s // st for s, st in zip(input_size, cnf.stride_q)]
        self.norm = norm_layer(block_setting[-1].output_channels)
        self.head = nn.Sequential(
            nn.Dropout(dropout, inplace=True),
            nn.Linear(block_setting[-1].output_channels, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.0)
            elif isinstance(m, nn.LayerNorm):
                if m.weight is not None:
                    nn.init.constant_(m.weight, 1.0)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0.0)
            elif isinstance(m, PositionalEncoding):
                for p in m.parameters():
                    nn.init.trunc_normal_(p, std=0.02)

    def forward(self, x: Tensor) -> Tensor:
        # torchvision's steps, in its order (they are the nodes feature extraction names);
        # (B, C, H, W) images become one-frame clips
        x = _unsqueeze(x, 5, 2)[0]
        x = self.conv_proj(x)
        thw = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        if not isinstance(x, Proxy) and tuple(x.shape[2:]) != thw:
            # the positions (v1) and the pooling grid are fixed when the model is built
            raise ValueError(
                f"MViT was built for {thw} patches (spatial_size, temporal_size of the "
                f"builder); this clip gives {tuple(x.shape[2:])}: build the model with "
                "spatial_size=(H, W), temporal_size=T of the clip (T even, H and W "
                "multiples of 4)"
            )
        x = self.pos_encoding(x.flatten(2).transpose(1, 2))
        for blk in self.blocks:
            x, thw = blk(x, thw)
        x = self.norm(x)
        return self.head(x[:, 0])


def _mvit(block_setting, stochastic_depth_prob: float, weights, progress: bool, **kwargs):
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 400)
        _ovewrite_named_param(kwargs, "spatial_size", weights.meta["min_size"])
        _ovewrite_named_param(kwargs, "temporal_size", weights.meta["min_temporal_size"])
    model = MViT(
        spatial_size=tuple(kwargs.pop("spatial_size", (224, 224))),
        temporal_size=kwargs.pop("temporal_size", 16),
        block_setting=block_setting,
        stochastic_depth_prob=stochastic_depth_prob,
        **kwargs,
    )
    return load_weights(model, weights, progress)


def _block_setting(v2: bool) -> list[MSBlockConfig]:
    """The 16 blocks of ``mvit_v1_b`` / ``mvit_v2_s`` (Table 1 of the papers): the query grid
    halves (space) at blocks 1, 3 and 14, where the heads and (v1: at the block after; v2: in
    that block) the channels double; the keys/values are pooled to a 7x7 grid at 224 pixels."""
    heads = [1, 2, 2] + [4] * 11 + [8, 8]
    if v2:
        c_in = [96, 96, 192, 192] + [384] * 11 + [768]
        c_out = [96, 192, 192] + [384] * 11 + [768, 768]
    else:
        c_in = [96, 192, 192] + [384] * 11 + [768, 768]
        c_out = [192, 192] + [384] * 11 + [768] * 3
    stride_kv = [[1, 8, 8]] + [[1, 4, 4]] * 2 + [[1, 2, 2]] * 11 + [[1, 1, 1]] * 2
    out = []
    for i in range(16):
        pooled = i in (1, 3, 14)
        if v2:
            kernel_q, stride_q = [3, 3, 3], ([1, 2, 2] if pooled else [1, 1, 1])
        else:
            kernel_q, stride_q = ([3, 3, 3], [1, 2, 2]) if pooled else ([], [])
        cfg = MSBlockConfig(
            heads[i], c_in[i], c_out[i], kernel_q, [3, 3, 3], stride_q, stride_kv[i]
        )
        out.append(cfg)
    return out


def _kinetics(file: str, num_params: int, recipe: str, metrics, ops: float, size: float):
    return Weights(
        url=f"https://download.pytorch.org/models/{file}.pth",
        transforms=partial(
            VideoClassification,
            crop_size=(224, 224),
            resize_size=(256,),
            mean=(0.45, 0.45, 0.45),
            std=(0.225, 0.225, 0.225),
        ),  # fmt: skip
        meta={
            "min_size": (224, 224),
            "min_temporal_size": 16,
            "categories": None,
            "recipe": recipe,
            "num_params": num_params,
            "_metrics": {"Kinetics-400": {"acc@1": metrics[0], "acc@5": metrics[1]}},
            "_ops": ops,
            "_file_size": size,
        },
    )


class MViT_V1_B_Weights(WeightsEnum):
    """torchvision's Kinetics-400 checkpoint for :func:`mvit_v1_b` (ported from PyTorchVideo)."""

    KINETICS400_V1 = _kinetics(
        "mvit_v1_b-dbeb1030", 36610672,
        "https://github.com/facebookresearch/pytorchvideo/blob/main/docs/source/model_zoo.md",
        (78.477, 93.582), 70.599, 139.764,
    )  # fmt: skip
    DEFAULT = KINETICS400_V1


class MViT_V2_S_Weights(WeightsEnum):
    """torchvision's Kinetics-400 checkpoint for :func:`mvit_v2_s` (ported from SlowFast)."""

    KINETICS400_V1 = _kinetics(
        "mvit_v2_s-ae3be167", 34537744,
        "https://github.com/facebookresearch/SlowFast/blob/main/MODEL_ZOO.md",
        (80.757, 94.665), 64.224, 131.884,
    )  # fmt: skip
    DEFAULT = KINETICS400_V1


@handle_legacy_interface(lambda kwargs: MViT_V1_B_Weights.KINETICS400_V1)
def mvit_v1_b(
    *, weights: MViT_V1_B_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> MViT:
    """MViT v1 base (absolute positions, no residual pooling). ``kwargs`` go to :class:`MViT`;
    ``spatial_size=(H, W)`` and ``temporal_size=T`` build it for other clip sizes (ember
    extension: torchvision fixes 224x224x16)."""
    weights = MViT_V1_B_Weights.verify(weights)
    sd = kwargs.pop("stochastic_depth_prob", 0.2)
    kwargs = {"residual_pool": False, "residual_with_cls_embed": False, **kwargs}
    kwargs.setdefault("rel_pos_embed", False)
    kwargs.setdefault("proj_after_attn", False)
    return _mvit(_block_setting(v2=False), sd, weights, progress, **kwargs)


@handle_legacy_interface(lambda kwargs: MViT_V2_S_Weights.KINETICS400_V1)
def mvit_v2_s(
    *, weights: MViT_V2_S_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> MViT:
    """MViT v2 small (relative positions, residual pooling, projection after attention).
    ``kwargs`` as :func:`mvit_v1_b`."""
    weights = MViT_V2_S_Weights.verify(weights)
    sd = kwargs.pop("stochastic_depth_prob", 0.2)
    kwargs = {"residual_pool": True, "residual_with_cls_embed": False, **kwargs}
    kwargs.setdefault("rel_pos_embed", True)
    kwargs.setdefault("proj_after_attn", True)
    return _mvit(_block_setting(v2=True), sd, weights, progress, **kwargs)
