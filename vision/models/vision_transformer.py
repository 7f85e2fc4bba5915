"""Vision Transformer ViT-B/16 (Dosovitskiy et al., 2020) with torchvision's module names."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

import ember
from ember import nn
from ember.tensor import Tensor

from ._api import (
    Weights,
    WeightsEnum,
    _imagenet_transforms,
    _ovewrite_named_param,
    handle_legacy_interface,
    load_weights,
)

__all__ = ["VisionTransformer", "ViT_B_16_Weights", "vit_b_16"]


class MLPBlock(nn.Sequential):
    """``Linear -> GELU -> Dropout -> Linear -> Dropout`` (keys ``0.*`` and ``3.*``)."""

    def __init__(self, in_dim: int, mlp_dim: int, dropout: float) -> None:
        super().__init__(
            nn.Linear(in_dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, in_dim),
            nn.Dropout(dropout),
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
        if input.dim() != 3:
            raise ValueError(
                f"Expected (batch_size, seq_length, hidden_dim) got {tuple(input.shape)}"
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
        fan_in = 3 * patch_size * patch_size
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        if representation_size is not None:
            fan_in = self.heads.pre_logits.in_features
            nn.init.trunc_normal_(self.heads.pre_logits.weight, std=math.sqrt(1 / fan_in))
            nn.init.zeros_(self.heads.pre_logits.bias)
        nn.init.zeros_(self.heads.head.weight)
        nn.init.zeros_(self.heads.head.bias)

    def _process_input(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        if h != self.image_size or w != self.image_size:
            raise ValueError(f"Wrong image size! Expected {self.image_size} but got {h}x{w}")
        p = self.patch_size
        x = self.conv_proj(x)
        return x.reshape(n, self.hidden_dim, (h // p) * (w // p)).permute(0, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self._process_input(x)
        cls = self.class_token.expand(x.shape[0], -1, -1)
        x = self.encoder(ember.cat([cls, x], dim=1))
        return self.heads(x[:, 0])


class ViT_B_16_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.vit_b_16`.

    ``IMAGENET1K_V1`` is torchvision's ImageNet-1k checkpoint, for 224x224 inputs;
    ``DEFAULT`` aliases it.

    Each entry's ``transforms()`` builds its inference preset (resize, centre crop,
    ImageNet normalization), ``meta`` holds details such as ``num_params``, and
    ``get_state_dict()`` downloads the checkpoint.
    """

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/vit_b_16-c867db91.pth",
        transforms=_imagenet_transforms(224),
        meta={"num_params": 86567656, "min_size": (224, 224)},
    )
    DEFAULT = IMAGENET1K_V1


@handle_legacy_interface(ViT_B_16_Weights)
def vit_b_16(
    *, weights: ViT_B_16_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VisionTransformer:
    """ViT-B/16; ``weights=ViT_B_16_Weights.DEFAULT`` for ImageNet (224x224 inputs)."""
    weights = ViT_B_16_Weights.verify(weights)
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
        _ovewrite_named_param(kwargs, "image_size", 224)
    model = VisionTransformer(
        image_size=kwargs.pop("image_size", 224),
        patch_size=16,
        num_layers=12,
        num_heads=12,
        hidden_dim=768,
        mlp_dim=3072,
        **kwargs,
    )
    return load_weights(model, weights, progress)
