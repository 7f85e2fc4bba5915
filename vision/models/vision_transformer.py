"""Vision Transformers ViT-B/16, B/32, L/16, L/32, H/14 (Dosovitskiy et al., 2020) with
torchvision's module names."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

import ember
from ember import nn
from ember.tensor import Tensor

from ..ops.misc import MLP
from ._api import WeightsEnum, _ovewrite_named_param, handle_legacy_interface, load_weights
from ._vit_weights import (
    ViT_B_16_Weights,
    ViT_B_32_Weights,
    ViT_H_14_Weights,
    ViT_L_16_Weights,
    ViT_L_32_Weights,
)

__all__ = [
    "ConvStemConfig",
    "VisionTransformer",
    "interpolate_embeddings",
    *(f"ViT_{n}_Weights" for n in ("B_16", "B_32", "L_16", "L_32", "H_14")),
    *(f"vit_{n}" for n in ("b_16", "b_32", "l_16", "l_32", "h_14")),
]


class ConvStemConfig(NamedTuple):
    """One ``Conv2dNormActivation`` of a convolutional stem (Xiao et al., 2021)."""

    out_channels: int
    kernel_size: int
    stride: int
    norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d
    activation_layer: Callable[..., nn.Module] = nn.ReLU


class MLPBlock(MLP):
    """``Linear -> GELU -> Dropout -> Linear -> Dropout`` (keys ``0.*`` and ``3.*``): an
    ``ember.vision.ops.MLP``, as torchvision's (one node in feature extraction's graphs)."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            in_dim, [mlp_dim, in_dim], activation_layer=nn.GELU, inplace=None, dropout=dropout
        )
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)


class EncoderBlock(nn.Module):
    def __init__(
        self,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
        norm_layer: Callable[..., nn.Module],
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.ln_1 = norm_layer(hidden_dim)
        self.self_attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=attention_dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = norm_layer(hidden_dim)
        self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)

    def forward(self, input: Tensor) -> Tensor:
        ember._assert(
            input.dim() == 3, f"Expected (batch_size, seq_length, hidden_dim) got {input.shape}"
        )
        x = self.ln_1(input)
        x, _ = self.self_attention(x, x, x, need_weights=False)
        x = self.dropout(x) + input
        return x + self.mlp(self.ln_2(x))


class Encoder(nn.Module):
    def __init__(
        self,
        seq_length: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float,
        attention_dropout: float,
        norm_layer: Callable[..., nn.Module],
    ) -> None:
        super().__init__()
        self.pos_embedding = nn.Parameter(ember.empty(1, seq_length, hidden_dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(
            OrderedDict(
                (
                    f"encoder_layer_{i}",
                    EncoderBlock(
                        num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, norm_layer
                    ),
                )
                for i in range(num_layers)
            )
        )
        self.ln = norm_layer(hidden_dim)

    def forward(self, input: Tensor) -> Tensor:
        ember._assert(
            input.dim() == 3, f"Expected (batch_size, seq_length, hidden_dim) got {input.shape}"
        )
        return self.ln(self.layers(self.dropout(input + self.pos_embedding)))


class VisionTransformer(nn.Module):
    """A Vision Transformer image classifier (Dosovitskiy et al., 2020).

    The image is cut into ``patch_size`` squares, each projected to ``hidden_dim``; a class
    token and learned position embeddings are added, a transformer encoder runs over the
    sequence and the class token's output goes through the head. Takes ``(N, 3, image_size,
    image_size)`` images and returns ``(N, num_classes)`` logits.

    Args:
        image_size: the height and width of the input images; a multiple of ``patch_size``.
        patch_size: the side of each square patch.
        num_layers: the number of encoder blocks.
        num_heads: the number of attention heads.
        hidden_dim: the embedding width.
        mlp_dim: the hidden width of each block's MLP.
        dropout: the dropout probability in the encoder.
        attention_dropout: the dropout probability on the attention weights.
        num_classes: the number of output classes.
        representation_size: when given, a ``Linear`` + ``tanh`` layer of this width before the
            final linear layer.
        norm_layer: the normalization layer constructor, ``nn.LayerNorm`` with ``eps=1e-6`` by
            default.
        conv_stem_configs: when given, ``conv_proj`` is a convolutional stem: one
            ``Conv2dNormActivation`` per :class:`ConvStemConfig`, then a 1x1 convolution to
            ``hidden_dim`` (keys ``conv_bn_relu_{i}`` and ``conv_last``, as torchvision's).
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        num_layers: int,
        num_heads: int,
        hidden_dim: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        num_classes: int = 1000,
        representation_size: int | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
        conv_stem_configs: list[ConvStemConfig] | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        if image_size % patch_size != 0:
            raise ValueError(
                f"Input shape indivisible by patch size! ({image_size} % {patch_size})"
            )
        self.image_size, self.patch_size = image_size, patch_size
        self.hidden_dim, self.mlp_dim = hidden_dim, mlp_dim
        self.num_classes, self.representation_size = num_classes, representation_size
        # kept as attributes, as torchvision does: lightly's MAEBackbone.from_vit reads them
        self.dropout, self.attention_dropout = dropout, attention_dropout
        self.norm_layer = norm_layer
        if conv_stem_configs is not None:
            from ember.vision.ops.misc import Conv2dNormActivation

            stem = nn.Sequential()
            prev = 3
            for i, cfg in enumerate(conv_stem_configs):
                stem.add_module(
                    f"conv_bn_relu_{i}",
                    Conv2dNormActivation(
                        prev,
                        cfg.out_channels,
                        kernel_size=cfg.kernel_size,
                        stride=cfg.stride,
                        norm_layer=cfg.norm_layer,
                        activation_layer=cfg.activation_layer,
                    ),
                )
                prev = cfg.out_channels
            stem.add_module("conv_last", nn.Conv2d(prev, hidden_dim, kernel_size=1))
            self.conv_proj: nn.Module = stem
        else:
            self.conv_proj = nn.Conv2d(3, hidden_dim, kernel_size=patch_size, stride=patch_size)
        seq_length = (image_size // patch_size) ** 2 + 1  # + the class token
        self.class_token = nn.Parameter(ember.zeros(1, 1, hidden_dim))
        self.encoder = Encoder(
            seq_length,
            num_layers,
            num_heads,
            hidden_dim,
            mlp_dim,
            dropout,
            attention_dropout,
            norm_layer,
        )
        self.seq_length = seq_length
        heads: OrderedDict[str, nn.Module] = OrderedDict()
        if representation_size is None:
            heads["head"] = nn.Linear(hidden_dim, num_classes)
        else:
            heads["pre_logits"] = nn.Linear(hidden_dim, representation_size)
            heads["act"] = nn.Tanh()
            heads["head"] = nn.Linear(representation_size, num_classes)
        self.heads = nn.Sequential(heads)
        if isinstance(self.conv_proj, nn.Conv2d):
            fan_in = 3 * patch_size * patch_size
            nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
            nn.init.zeros_(self.conv_proj.bias)
        else:
            last = self.conv_proj.conv_last
            nn.init.normal_(last.weight, mean=0.0, std=math.sqrt(2.0 / last.out_channels))
            nn.init.zeros_(last.bias)
        if representation_size is not None:
            fan_in = self.heads.pre_logits.in_features
            nn.init.trunc_normal_(self.heads.pre_logits.weight, std=math.sqrt(1 / fan_in))
            nn.init.zeros_(self.heads.pre_logits.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def _process_input(self, x: Tensor) -> Tensor:
        # asserts rather than an ``if``, and torchvision's order of operations: ember.fx
        # traces through, and feature extraction names the nodes as torchvision does
        n, _, h, w = x.shape
        p = self.patch_size
        ember._assert(
            h == self.image_size, f"Wrong image height! Expected {self.image_size} but got {h}!"
        )
        ember._assert(
            w == self.image_size, f"Wrong image width! Expected {self.image_size} but got {w}!"
        )
        n_h, n_w = h // p, w // p
        x = self.conv_proj(x)
        return x.reshape(n, self.hidden_dim, n_h * n_w).permute(0, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self._process_input(x)
        n = x.shape[0]
        cls = self.class_token.expand(n, -1, -1)
        x = self.encoder(ember.cat([cls, x], dim=1))
        return self.heads(x[:, 0])


def _vision_transformer(
    patch_size: int,
    num_layers: int,
    num_heads: int,
    hidden_dim: int,
    mlp_dim: int,
    weights: WeightsEnum | None,
    progress: bool,
    **kwargs: Any,
) -> VisionTransformer:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
        # an entry is for one image size (its position embeddings): SWAG E2E is 384-518 px
        _ovewrite_named_param(kwargs, "image_size", weights.meta["min_size"][0])
    model = VisionTransformer(
        image_size=kwargs.pop("image_size", 224),
        patch_size=patch_size,
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        mlp_dim=mlp_dim,
        **kwargs,
    )
    return load_weights(model, weights, progress)


@handle_legacy_interface(ViT_B_16_Weights)
def vit_b_16(
    *, weights: ViT_B_16_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-B/16 (86.6 M parameters); ``weights=ViT_B_16_Weights.DEFAULT`` for ImageNet."""
    weights = ViT_B_16_Weights.verify(weights)
    return _vision_transformer(16, 12, 12, 768, 3072, weights, progress, **kwargs)


@handle_legacy_interface(ViT_B_32_Weights)
def vit_b_32(
    *, weights: ViT_B_32_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-B/32 (88.2 M parameters); ``weights=ViT_B_32_Weights.DEFAULT`` for ImageNet."""
    weights = ViT_B_32_Weights.verify(weights)
    return _vision_transformer(32, 12, 12, 768, 3072, weights, progress, **kwargs)


@handle_legacy_interface(ViT_L_16_Weights)
def vit_l_16(
    *, weights: ViT_L_16_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-L/16 (304.3 M parameters); ``weights=ViT_L_16_Weights.DEFAULT`` for ImageNet."""
    weights = ViT_L_16_Weights.verify(weights)
    return _vision_transformer(16, 24, 16, 1024, 4096, weights, progress, **kwargs)


@handle_legacy_interface(ViT_L_32_Weights)
def vit_l_32(
    *, weights: ViT_L_32_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-L/32 (306.5 M parameters); ``weights=ViT_L_32_Weights.DEFAULT`` for ImageNet."""
    weights = ViT_L_32_Weights.verify(weights)
    return _vision_transformer(32, 24, 16, 1024, 4096, weights, progress, **kwargs)


def vit_h_14(
    *, weights: ViT_H_14_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-H/14 (632 M parameters at 224 px); its weights are SWAG's only
    (``ViT_H_14_Weights.DEFAULT`` is the 518 px end-to-end fine-tuned entry). As torchvision's,
    it takes no ``pretrained=``."""
    weights = ViT_H_14_Weights.verify(weights)
    return _vision_transformer(14, 32, 16, 1280, 5120, weights, progress, **kwargs)


def interpolate_embeddings(
    image_size: int,
    patch_size: int,
    model_state: dict[str, Tensor],
    interpolation_mode: str = "bicubic",
    reset_heads: bool = False,
) -> dict[str, Tensor]:
    """Resize a ViT state dict's position embeddings for ``image_size`` images.

    The class token's embedding is kept; the patch embeddings, a square grid, are resampled
    with ``interpolation_mode`` (``align_corners=True``) to ``image_size // patch_size`` per
    side. As torchvision's, ``model_state`` is updated in place and returned, and when the
    embeddings were resized, ``reset_heads=True`` returns a copy without the classifier
    (``heads.*``), for a new head.
    """
    pos = model_state["encoder.pos_embedding"]
    n, seq_length, hidden_dim = pos.shape
    if n != 1:
        raise ValueError(f"Unexpected position embedding shape: {tuple(pos.shape)}")
    new_side = image_size // patch_size
    if new_side * new_side + 1 == seq_length:
        return model_state
    side = math.isqrt(seq_length - 1)
    if side * side != seq_length - 1:
        raise ValueError(
            f"seq_length - 1 = {seq_length - 1} is not a perfect square: the patch embeddings "
            "are not a square grid"
        )
    token, grid = pos[:, :1], pos[:, 1:]
    grid = grid.permute(0, 2, 1).reshape(1, hidden_dim, side, side)
    grid = nn.functional.interpolate(
        grid, size=new_side, mode=interpolation_mode, align_corners=True
    )
    grid = grid.reshape(1, hidden_dim, new_side * new_side).permute(0, 2, 1)
    model_state["encoder.pos_embedding"] = ember.cat([token, grid], dim=1)
    if reset_heads:
        return OrderedDict((k, v) for k, v in model_state.items() if not k.startswith("heads"))
    return model_state
