"""MobileNetV3-Small (Howard et al., 2019) with torchvision's module names."""

from __future__ import annotations

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
from ._ops import Conv2dNormActivation, SqueezeExcitation, init_weights, make_divisible

__all__ = [
    "MobileNetV3",
    "MobileNet_V3_Large_Weights",
    "MobileNet_V3_Small_Weights",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "InvertedResidualConfig",
]


class InvertedResidualConfig:
    """The settings of one MobileNetV3 inverted residual block.

    Channel counts are scaled by ``width_mult`` and rounded to a multiple of 8.

    Args:
        input_channels: the number of input channels.
        kernel: the kernel size of the depthwise convolution.
        expanded_channels: the inner width of the block.
        out_channels: the number of output channels.
        use_se: add a squeeze-and-excitation layer.
        activation: ``"HS"`` for hard-swish, anything else (``"RE"``) for ReLU.
        stride: the stride of the depthwise convolution.
        dilation: the dilation of the depthwise convolution (a dilated block keeps stride 1).
        width_mult: the channel multiplier.
    """

    def __init__(
        self,
        input_channels: int,
        kernel: int,
        expanded_channels: int,
        out_channels: int,
        use_se: bool,
        activation: str,
        stride: int,
        dilation: int,
        width_mult: float,
    ) -> None:
        self.input_channels = make_divisible(input_channels * width_mult, 8)
        self.kernel = kernel
        self.expanded_channels = make_divisible(expanded_channels * width_mult, 8)
        self.out_channels = make_divisible(out_channels * width_mult, 8)
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride, self.dilation = stride, dilation


# torchvision's default squeeze-excitation of MobileNetV3 (hard sigmoid gate)
_HARD_SE = partial(SqueezeExcitation, scale_activation=nn.Hardsigmoid)


class InvertedResidual(nn.Module):
    def __init__(
        self,
        cnf: InvertedResidualConfig,
        norm_layer: Callable[..., nn.Module],
        se_layer: Callable[..., nn.Module] = _HARD_SE,
    ):
        super().__init__()
        if cnf.stride not in (1, 2):
            raise ValueError("illegal stride value")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        act = nn.Hardswish if cnf.use_hs else nn.ReLU
        layers: list[nn.Module] = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(
                Conv2dNormActivation(
                    cnf.input_channels,
                    cnf.expanded_channels,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=act,
                )
            )
        layers.append(
            Conv2dNormActivation(
                cnf.expanded_channels,
                cnf.expanded_channels,
                kernel_size=cnf.kernel,
                stride=1 if cnf.dilation > 1 else cnf.stride,
                dilation=cnf.dilation,
                groups=cnf.expanded_channels,
                norm_layer=norm_layer,
                activation_layer=act,
            )
        )
        if cnf.use_se:
            squeeze = make_divisible(cnf.expanded_channels // 4, 8)
            layers.append(se_layer(cnf.expanded_channels, squeeze))
        layers.append(
            Conv2dNormActivation(
                cnf.expanded_channels,
                cnf.out_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=None,
            )
        )
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels
        self._is_cn = cnf.stride > 1

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNetV3(nn.Module):
    """A MobileNetV3 image classifier (Howard et al., 2019).

    A 3x3 stem, inverted residual blocks, a 1x1 head convolution, global average pooling and
    a two-layer classifier with hard-swish and dropout. Takes ``(N, 3, H, W)`` images and
    returns ``(N, num_classes)`` logits.

    Args:
        inverted_residual_setting: one
            :class:`~ember.vision.models.InvertedResidualConfig` per block.
        last_channel: the width of the classifier's hidden layer.
        num_classes: the number of output classes.
        block: the block constructor, the inverted residual block by default.
        norm_layer: the normalization layer constructor, ``nn.BatchNorm2d`` with
            ``eps=0.001`` and ``momentum=0.01`` by default.
        dropout: the dropout probability in the classifier.
    """

    def __init__(
        self,
        inverted_residual_setting: list[InvertedResidualConfig],
        last_channel: int,
        num_classes: int = 1000,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("The inverted_residual_setting should not be empty")
        block = block or InvertedResidual
        norm_layer = norm_layer or partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        first = inverted_residual_setting[0].input_channels
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                3,
                first,
                kernel_size=3,
                stride=2,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        ]
        layers += [block(cnf, norm_layer) for cnf in inverted_residual_setting]
        last_in = inverted_residual_setting[-1].out_channels
        last_out = 6 * last_in
        layers.append(
            Conv2dNormActivation(
                last_in,
                last_out,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.Hardswish,
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(last_out, last_channel),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True),
            nn.Linear(last_channel, num_classes),
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = ember.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier(x)


def _small_conf(
    width_mult: float = 1.0, reduced_tail: bool = False, dilated: bool = False
) -> tuple[list[InvertedResidualConfig], int]:
    c = partial(InvertedResidualConfig, width_mult=width_mult)
    rd = 2 if reduced_tail else 1
    dil = 2 if dilated else 1
    setting = [
        c(16, 3, 16, 16, True, "RE", 2, 1),
        c(16, 3, 72, 24, False, "RE", 2, 1),
        c(24, 3, 88, 24, False, "RE", 1, 1),
        c(24, 5, 96, 40, True, "HS", 2, 1),
        c(40, 5, 240, 40, True, "HS", 1, 1),
        c(40, 5, 240, 40, True, "HS", 1, 1),
        c(40, 5, 120, 48, True, "HS", 1, 1),
        c(48, 5, 144, 48, True, "HS", 1, 1),
        c(48, 5, 288 // rd, 96 // rd, True, "HS", 2, dil),
        c(96 // rd, 5, 576 // rd, 96 // rd, True, "HS", 1, dil),
        c(96 // rd, 5, 576 // rd, 96 // rd, True, "HS", 1, dil),
    ]
    return setting, make_divisible(1024 // rd * width_mult, 8)


class MobileNet_V3_Small_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.mobilenet_v3_small`.

    ``IMAGENET1K_V1`` is torchvision's ImageNet-1k checkpoint; ``DEFAULT`` aliases it.

    Each entry's ``transforms()`` builds its inference preset (resize, centre crop,
    ImageNet normalization), ``meta`` holds details such as ``num_params``, and
    ``get_state_dict()`` downloads the checkpoint.
    """

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth",
        transforms=_imagenet_transforms(224),
        meta={"num_params": 2542856, "min_size": (1, 1)},
    )
    DEFAULT = IMAGENET1K_V1


@handle_legacy_interface(MobileNet_V3_Small_Weights)
def mobilenet_v3_small(
    *, weights: MobileNet_V3_Small_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> MobileNetV3:
    """MobileNetV3-Small; ``weights=MobileNet_V3_Small_Weights.DEFAULT`` for ImageNet."""
    weights = MobileNet_V3_Small_Weights.verify(weights)
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    setting, last_channel = _small_conf(
        kwargs.pop("width_mult", 1.0),
        kwargs.pop("reduced_tail", False),
        kwargs.pop("dilated", False),
    )
    return load_weights(MobileNetV3(setting, last_channel, **kwargs), weights, progress)


def _large_conf(
    width_mult: float = 1.0, reduced_tail: bool = False, dilated: bool = False
) -> tuple[list[InvertedResidualConfig], int]:
    c = partial(InvertedResidualConfig, width_mult=width_mult)
    rd = 2 if reduced_tail else 1
    dil = 2 if dilated else 1
    setting = [
        c(16, 3, 16, 16, False, "RE", 1, 1),
        c(16, 3, 64, 24, False, "RE", 2, 1),  # C1
        c(24, 3, 72, 24, False, "RE", 1, 1),
        c(24, 5, 72, 40, True, "RE", 2, 1),  # C2
        c(40, 5, 120, 40, True, "RE", 1, 1),
        c(40, 5, 120, 40, True, "RE", 1, 1),
        c(40, 3, 240, 80, False, "HS", 2, 1),  # C3
        c(80, 3, 200, 80, False, "HS", 1, 1),
        c(80, 3, 184, 80, False, "HS", 1, 1),
        c(80, 3, 184, 80, False, "HS", 1, 1),
        c(80, 3, 480, 112, True, "HS", 1, 1),
        c(112, 3, 672, 112, True, "HS", 1, 1),
        c(112, 5, 672, 160 // rd, True, "HS", 2, dil),  # C4
        c(160 // rd, 5, 960 // rd, 160 // rd, True, "HS", 1, dil),
        c(160 // rd, 5, 960 // rd, 160 // rd, True, "HS", 1, dil),
    ]
    return setting, make_divisible(1280 // rd * width_mult, 8)


class MobileNet_V3_Large_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.mobilenet_v3_large` (torchvision's
    ImageNet-1k checkpoints; ``DEFAULT`` is ``IMAGENET1K_V2``, the newer recipe's)."""

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth",
        transforms=_imagenet_transforms(224),
        meta={"num_params": 5483032, "min_size": (1, 1)},
    )
    IMAGENET1K_V2 = Weights(
        url="https://download.pytorch.org/models/mobilenet_v3_large-5c1a4163.pth",
        transforms=_imagenet_transforms(224, 232),
        meta={"num_params": 5483032, "min_size": (1, 1)},
    )
    DEFAULT = IMAGENET1K_V2


@handle_legacy_interface(MobileNet_V3_Large_Weights)
def mobilenet_v3_large(
    *, weights: MobileNet_V3_Large_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> MobileNetV3:
    """MobileNetV3-Large; ``dilated=True`` keeps the last stage at output stride 16 (the
    segmentation backbone's setting)."""
    weights = MobileNet_V3_Large_Weights.verify(weights)
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    setting, last_channel = _large_conf(
        kwargs.pop("width_mult", 1.0),
        kwargs.pop("reduced_tail", False),
        kwargs.pop("dilated", False),
    )
    return load_weights(MobileNetV3(setting, last_channel, **kwargs), weights, progress)
