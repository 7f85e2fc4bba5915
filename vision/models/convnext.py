"""ConvNeXt Tiny / Small / Base / Large (Liu et al., 2022) with torchvision's module names."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import ember
from ember import nn
from ember.tensor import Tensor

from ..ops.misc import Permute
from ._api import (
    Weights,
    WeightsEnum,
    _imagenet_transforms,
    _ovewrite_named_param,
    handle_legacy_interface,
    load_weights,
)
from ._ops import Conv2dNormActivation, StochasticDepth

__all__ = [
    "ConvNeXt",
    "CNBlockConfig",
    "ConvNeXt_Tiny_Weights",
    "ConvNeXt_Small_Weights",
    "ConvNeXt_Base_Weights",
    "ConvNeXt_Large_Weights",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
]


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)
        x = nn.functional.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CNBlock(nn.Module):
    def __init__(
        self,
        dim: int,
        layer_scale: float,
        stochastic_depth_prob: float,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or partial(nn.LayerNorm, eps=1e-6)
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim),
            Permute([0, 2, 3, 1]),
            norm_layer(dim),
            nn.Linear(dim, 4 * dim),
            nn.GELU(),
            nn.Linear(4 * dim, dim),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(ember.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")

    def forward(self, input: Tensor) -> Tensor:
        return self.stochastic_depth(self.layer_scale * self.block(input)) + input


class CNBlockConfig:
    """The settings of one ConvNeXt stage.

    Args:
        input_channels: the number of channels of the stage's blocks.
        out_channels: the number of channels after the downsampling layer that follows the
            stage, or ``None`` for the last stage (no downsampling).
        num_layers: the number of blocks in the stage.
    """

    def __init__(self, input_channels: int, out_channels: int | None, num_layers: int) -> None:
        self.input_channels, self.out_channels, self.num_layers = (
            input_channels,
            out_channels,
            num_layers,
        )


class ConvNeXt(nn.Module):
    """A ConvNeXt image classifier (Liu et al., 2022).

    A 4x4 patchifying stem, stages of ConvNeXt blocks separated by downsampling layers, global
    average pooling, a normalization and a linear classifier. Takes ``(N, 3, H, W)`` images
    and returns ``(N, num_classes)`` logits.

    Args:
        block_setting: one :class:`~ember.vision.models.CNBlockConfig` per stage.
        stochastic_depth_prob: the stochastic depth rate of the last block; it grows linearly
            from 0 over the blocks.
        layer_scale: the initial value of each block's per-channel layer scale.
        num_classes: the number of output classes.
        block: the block constructor, ConvNeXt's own block by default.
        norm_layer: the normalization layer constructor, a channel-wise layer norm by default.
    """

    def __init__(
        self,
        block_setting: list[CNBlockConfig],
        stochastic_depth_prob: float = 0.0,
        layer_scale: float = 1e-6,
        num_classes: int = 1000,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if not block_setting:
            raise ValueError("The block_setting should not be empty")
        block = block or CNBlock
        norm_layer = norm_layer or partial(LayerNorm2d, eps=1e-6)
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                3,
                block_setting[0].input_channels,
                kernel_size=4,
                stride=4,
                padding=0,
                norm_layer=norm_layer,
                activation_layer=None,
                bias=True,
            )
        ]
        total = sum(cnf.num_layers for cnf in block_setting)
        block_id = 0
        for cnf in block_setting:
            stage = []
            for _ in range(cnf.num_layers):
                sd_prob = stochastic_depth_prob * block_id / (total - 1.0)
                stage.append(block(cnf.input_channels, layer_scale, sd_prob))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if cnf.out_channels is not None:
                layers.append(
                    nn.Sequential(
                        norm_layer(cnf.input_channels),
                        nn.Conv2d(cnf.input_channels, cnf.out_channels, kernel_size=2, stride=2),
                    )
                )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = block_setting[-1]
        last_out = last.out_channels if last.out_channels is not None else last.input_channels
        self.classifier = nn.Sequential(
            norm_layer(last_out), nn.Flatten(1), nn.Linear(last_out, num_classes)
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def _weights(name: str, resize_size: int, num_params: int) -> Weights:
    return Weights(
        url=f"https://download.pytorch.org/models/{name}.pth",
        transforms=_imagenet_transforms(224, resize_size=resize_size),
        meta={"num_params": num_params, "min_size": (32, 32)},
    )


_ENUM_DOC = """Pretrained weights for :func:`~ember.vision.models.{0}`.

    ``IMAGENET1K_V1`` is torchvision's ImageNet-1k checkpoint; ``DEFAULT`` aliases it.

    Each entry's ``transforms()`` builds its inference preset (resize, centre crop,
    ImageNet normalization), ``meta`` holds details such as ``num_params``, and
    ``get_state_dict()`` downloads the checkpoint.
    """


class ConvNeXt_Tiny_Weights(WeightsEnum):
    __doc__ = _ENUM_DOC.format("convnext_tiny")
    IMAGENET1K_V1 = _weights("convnext_tiny-983f1562", 236, 28589128)
    DEFAULT = IMAGENET1K_V1


class ConvNeXt_Small_Weights(WeightsEnum):
    __doc__ = _ENUM_DOC.format("convnext_small")
    IMAGENET1K_V1 = _weights("convnext_small-0c510722", 230, 50223688)
    DEFAULT = IMAGENET1K_V1


class ConvNeXt_Base_Weights(WeightsEnum):
    __doc__ = _ENUM_DOC.format("convnext_base")
    IMAGENET1K_V1 = _weights("convnext_base-6075fbad", 232, 88591464)
    DEFAULT = IMAGENET1K_V1


class ConvNeXt_Large_Weights(WeightsEnum):
    __doc__ = _ENUM_DOC.format("convnext_large")
    IMAGENET1K_V1 = _weights("convnext_large-ea097f82", 232, 197767336)
    DEFAULT = IMAGENET1K_V1


def _convnext(
    widths: tuple[int, int, int, int],
    stage3_depth: int,
    default_sd_prob: float,
    weights: WeightsEnum | None,
    progress: bool,
    **kwargs: Any,
) -> ConvNeXt:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    depths = (3, 3, stage3_depth, 3)
    nxt = (*widths[1:], None)
    setting = [CNBlockConfig(c, n, d) for c, n, d in zip(widths, nxt, depths)]
    sd = kwargs.pop("stochastic_depth_prob", default_sd_prob)
    return load_weights(ConvNeXt(setting, sd, **kwargs), weights, progress)


@handle_legacy_interface(ConvNeXt_Tiny_Weights)
def convnext_tiny(
    *, weights: ConvNeXt_Tiny_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ConvNeXt:
    """ConvNeXt-Tiny; ``weights=ConvNeXt_Tiny_Weights.DEFAULT`` for ImageNet."""
    weights = ConvNeXt_Tiny_Weights.verify(weights)
    return _convnext((96, 192, 384, 768), 9, 0.1, weights, progress, **kwargs)


@handle_legacy_interface(ConvNeXt_Small_Weights)
def convnext_small(
    *, weights: ConvNeXt_Small_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ConvNeXt:
    """ConvNeXt-Small (50.2 M parameters); ``weights=ConvNeXt_Small_Weights.DEFAULT`` for
    ImageNet."""
    weights = ConvNeXt_Small_Weights.verify(weights)
    return _convnext((96, 192, 384, 768), 27, 0.4, weights, progress, **kwargs)


@handle_legacy_interface(ConvNeXt_Base_Weights)
def convnext_base(
    *, weights: ConvNeXt_Base_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ConvNeXt:
    """ConvNeXt-Base (88.6 M parameters); ``weights=ConvNeXt_Base_Weights.DEFAULT`` for
    ImageNet."""
    weights = ConvNeXt_Base_Weights.verify(weights)
    return _convnext((128, 256, 512, 1024), 27, 0.5, weights, progress, **kwargs)


@handle_legacy_interface(ConvNeXt_Large_Weights)
def convnext_large(
    *, weights: ConvNeXt_Large_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ConvNeXt:
    """ConvNeXt-Large (197.8 M parameters); ``weights=ConvNeXt_Large_Weights.DEFAULT`` for
    ImageNet."""
    weights = ConvNeXt_Large_Weights.verify(weights)
    return _convnext((192, 384, 768, 1536), 27, 0.5, weights, progress, **kwargs)
