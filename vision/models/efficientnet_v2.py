"""EfficientNetV2 (Tan & Le, 2021) S / M / L with torchvision's module names.

The early stages use Fused-MBConv blocks (one regular convolution in place of the 1x1
expansion and the depthwise convolution, no squeeze-and-excitation); the later ones the MBConv
blocks of :mod:`~ember.vision.models.efficientnet`, built by the same
:class:`~ember.vision.models.EfficientNet`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from ember import nn
from ember.tensor import Tensor

from ..transforms.functional import InterpolationMode
from ._api import Weights, WeightsEnum, _ovewrite_named_param, handle_legacy_interface, load_weights
from ._ops import Conv2dNormActivation, StochasticDepth
from .efficientnet import EfficientNet, MBConvConfig

__all__ = [
    "FusedMBConv",
    "FusedMBConvConfig",
    "EfficientNet_V2_S_Weights",
    "EfficientNet_V2_M_Weights",
    "EfficientNet_V2_L_Weights",
    "efficientnet_v2_s",
    "efficientnet_v2_m",
    "efficientnet_v2_l",
]


class FusedMBConv(nn.Module):
    """A Fused-MBConv block: a ``kernel x kernel`` expansion convolution, then (when the
    block expands) a 1x1 projection; a residual connection with stochastic depth when the
    shapes allow."""

    def __init__(
        self,
        cnf: FusedMBConvConfig,
        stochastic_depth_prob: float,
        norm_layer: Callable[..., nn.Module],
    ) -> None:
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError("illegal stride value")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        expanded = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        conv = partial(Conv2dNormActivation, norm_layer=norm_layer)
        if expanded != cnf.input_channels:
            layers = [
                conv(
                    cnf.input_channels,
                    expanded,
                    kernel_size=cnf.kernel,
                    stride=cnf.stride,
                    activation_layer=nn.SiLU,
                ),
                conv(expanded, cnf.out_channels, kernel_size=1, activation_layer=None),
            ]
        else:
            layers = [
                conv(
                    cnf.input_channels,
                    cnf.out_channels,
                    kernel_size=cnf.kernel,
                    stride=cnf.stride,
                    activation_layer=nn.SiLU,
                )
            ]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, input: Tensor) -> Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result) + input
        return result


class FusedMBConvConfig(MBConvConfig):
    """The settings of one EfficientNetV2 stage of Fused-MBConv blocks (no width or depth
    multipliers: the V2 models list their channels and depths as they are)."""

    block = FusedMBConv

    def __init__(
        self,
        expand_ratio: float,
        kernel: int,
        stride: int,
        input_channels: int,
        out_channels: int,
        num_layers: int,
    ) -> None:
        super().__init__(expand_ratio, kernel, stride, input_channels, out_channels, num_layers)


def _v2(
    setting: list[MBConvConfig],
    dropout: float,
    weights: WeightsEnum | None,
    progress: bool,
    **kwargs: Any,
) -> EfficientNet:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    model = EfficientNet(
        setting,
        kwargs.pop("dropout", dropout),
        last_channel=1280,
        norm_layer=kwargs.pop("norm_layer", partial(nn.BatchNorm2d, eps=1e-03)),
        **kwargs,
    )
    return load_weights(model, weights, progress)


def _weights(name: str, size: int, num_params: int, **preset: Any) -> Weights:
    from ember.vision.transforms._presets import ImageClassification

    return Weights(
        url=f"https://download.pytorch.org/models/{name}.pth",
        transforms=partial(ImageClassification, crop_size=size, resize_size=size, **preset),
        meta={"num_params": num_params, "min_size": (33, 33)},
    )


class EfficientNet_V2_S_Weights(WeightsEnum):
    """torchvision's ImageNet-1k checkpoint for :func:`efficientnet_v2_s` (384 px)."""

    IMAGENET1K_V1 = _weights("efficientnet_v2_s-dd5fe13b", 384, 21458488)
    DEFAULT = IMAGENET1K_V1


class EfficientNet_V2_M_Weights(WeightsEnum):
    """torchvision's ImageNet-1k checkpoint for :func:`efficientnet_v2_m` (480 px)."""

    IMAGENET1K_V1 = _weights("efficientnet_v2_m-dc08266a", 480, 54139356)
    DEFAULT = IMAGENET1K_V1


class EfficientNet_V2_L_Weights(WeightsEnum):
    """torchvision's ImageNet-1k checkpoint for :func:`efficientnet_v2_l` (480 px, bicubic,
    inputs normalized to [-1, 1])."""

    IMAGENET1K_V1 = _weights(
        "efficientnet_v2_l-59c71312",
        480,
        118515272,
        interpolation=InterpolationMode.BICUBIC,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
    )
    DEFAULT = IMAGENET1K_V1


F, M = FusedMBConvConfig, MBConvConfig


@handle_legacy_interface(EfficientNet_V2_S_Weights)
def efficientnet_v2_s(
    *, weights: EfficientNet_V2_S_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNetV2-S (21.5 M parameters); ``weights=EfficientNet_V2_S_Weights.DEFAULT`` for
    ImageNet."""
    weights = EfficientNet_V2_S_Weights.verify(weights)
    setting = [
        F(1, 3, 1, 24, 24, 2),
        F(4, 3, 2, 24, 48, 4),
        F(4, 3, 2, 48, 64, 4),
        M(4, 3, 2, 64, 128, 6),
        M(6, 3, 1, 128, 160, 9),
        M(6, 3, 2, 160, 256, 15),
    ]
    return _v2(setting, 0.2, weights, progress, **kwargs)


@handle_legacy_interface(EfficientNet_V2_M_Weights)
def efficientnet_v2_m(
    *, weights: EfficientNet_V2_M_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNetV2-M (54.1 M parameters)."""
    weights = EfficientNet_V2_M_Weights.verify(weights)
    setting = [
        F(1, 3, 1, 24, 24, 3),
        F(4, 3, 2, 24, 48, 5),
        F(4, 3, 2, 48, 80, 5),
        M(4, 3, 2, 80, 160, 7),
        M(6, 3, 1, 160, 176, 14),
        M(6, 3, 2, 176, 304, 18),
        M(6, 3, 1, 304, 512, 5),
    ]
    return _v2(setting, 0.3, weights, progress, **kwargs)


@handle_legacy_interface(EfficientNet_V2_L_Weights)
def efficientnet_v2_l(
    *, weights: EfficientNet_V2_L_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNetV2-L (118.5 M parameters)."""
    weights = EfficientNet_V2_L_Weights.verify(weights)
    setting = [
        F(1, 3, 1, 32, 32, 4),
        F(4, 3, 2, 32, 64, 7),
        F(4, 3, 2, 64, 96, 7),
        M(4, 3, 2, 96, 192, 10),
        M(6, 3, 1, 192, 224, 19),
        M(6, 3, 2, 224, 384, 25),
        M(6, 3, 1, 384, 640, 7),
    ]
    return _v2(setting, 0.4, weights, progress, **kwargs)
