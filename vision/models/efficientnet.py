"""EfficientNet-B0 (Tan & Le, 2019) with torchvision's module names."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from functools import partial
from typing import Any

import ember
from ember import nn
from ember.tensor import Tensor

from ..transforms.functional import InterpolationMode
from ._api import (
    Weights,
    WeightsEnum,
    _imagenet_transforms,
    _ovewrite_named_param,
    handle_legacy_interface,
    load_weights,
)
from ._ops import Conv2dNormActivation, SqueezeExcitation, StochasticDepth, make_divisible

__all__ = ["EfficientNet", "MBConvConfig", "EfficientNet_B0_Weights", "efficientnet_b0"]


class MBConvConfig:
    """The settings of one EfficientNet stage of MBConv blocks.

    Channel counts are scaled by ``width_mult`` and rounded to a multiple of 8, and the number
    of blocks is scaled by ``depth_mult`` and rounded up.

    Args:
        expand_ratio: the expansion factor of the blocks' inner width.
        kernel: the kernel size of the depthwise convolution.
        stride: the stride of the stage's first block.
        input_channels: the number of input channels of the stage.
        out_channels: the number of output channels of the stage.
        num_layers: the number of blocks in the stage.
        width_mult: the channel multiplier.
        depth_mult: the depth multiplier.
    """

    def __init__(
        self,
        expand_ratio: float,
        kernel: int,
        stride: int,
        input_channels: int,
        out_channels: int,
        num_layers: int,
        width_mult: float = 1.0,
        depth_mult: float = 1.0,
    ) -> None:
        self.expand_ratio, self.kernel, self.stride = expand_ratio, kernel, stride
        self.input_channels = self.adjust_channels(input_channels, width_mult)
        self.out_channels = self.adjust_channels(out_channels, width_mult)
        self.num_layers = int(math.ceil(num_layers * depth_mult))

    @staticmethod
    def adjust_channels(channels: int, width_mult: float, min_value: int | None = None) -> int:
        return make_divisible(channels * width_mult, 8, min_value)


class MBConv(nn.Module):
    def __init__(
        self, cnf: MBConvConfig, stochastic_depth_prob: float, norm_layer: Callable[..., nn.Module]
    ) -> None:
        super().__init__()
        if not 1 <= cnf.stride <= 2:
            raise ValueError("illegal stride value")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        expanded = cnf.adjust_channels(cnf.input_channels, cnf.expand_ratio)
        layers: list[nn.Module] = []
        if expanded != cnf.input_channels:
            layers.append(
                Conv2dNormActivation(
                    cnf.input_channels,
                    expanded,
                    kernel_size=1,
                    norm_layer=norm_layer,
                    activation_layer=nn.SiLU,
                )
            )
        layers.append(
            Conv2dNormActivation(
                expanded,
                expanded,
                kernel_size=cnf.kernel,
                stride=cnf.stride,
                groups=expanded,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        )
        layers.append(
            SqueezeExcitation(
                expanded, max(1, cnf.input_channels // 4), activation=partial(nn.SiLU, inplace=True)
            )
        )
        layers.append(
            Conv2dNormActivation(
                expanded,
                cnf.out_channels,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=None,
            )
        )
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(stochastic_depth_prob, "row")
        self.out_channels = cnf.out_channels

    def forward(self, input: Tensor) -> Tensor:
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result) + input
        return result


class EfficientNet(nn.Module):
    """An EfficientNet image classifier (Tan & Le, 2019).

    A 3x3 stem, stages of MBConv blocks with squeeze-and-excitation, a 1x1 head convolution,
    global average pooling, dropout and a linear classifier. Takes ``(N, 3, H, W)`` images and
    returns ``(N, num_classes)`` logits.

    Args:
        inverted_residual_setting: one :class:`~ember.vision.models.MBConvConfig` per stage.
        dropout: the dropout probability before the classifier.
        stochastic_depth_prob: the stochastic depth rate, scaled linearly from 0 over the
            blocks.
        num_classes: the number of output classes.
        norm_layer: the normalization layer constructor, ``nn.BatchNorm2d`` by default.
        last_channel: the width of the head convolution; four times the last stage's width
            when ``None``.
    """

    def __init__(
        self,
        inverted_residual_setting: list[MBConvConfig],
        dropout: float,
        stochastic_depth_prob: float = 0.2,
        num_classes: int = 1000,
        norm_layer: Callable[..., nn.Module] | None = None,
        last_channel: int | None = None,
    ) -> None:
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("The inverted_residual_setting should not be empty")
        norm_layer = norm_layer or nn.BatchNorm2d
        layers: list[nn.Module] = [
            Conv2dNormActivation(
                3,
                inverted_residual_setting[0].input_channels,
                kernel_size=3,
                stride=2,
                norm_layer=norm_layer,
                activation_layer=nn.SiLU,
            )
        ]
        total = sum(cnf.num_layers for cnf in inverted_residual_setting)
        block_id = 0
        for cnf in inverted_residual_setting:
            stage: list[nn.Module] = []
            for _ in range(cnf.num_layers):
                block_cnf = copy.copy(cnf)
                if stage:
                    block_cnf.input_channels, block_cnf.stride = block_cnf.out_channels, 1
                sd_prob = stochastic_depth_prob * float(block_id) / total
                # a config names its block (EfficientNetV2's Fused-MBConv stages); MBConv else
                block = getattr(cnf, "block", MBConv)
                stage.append(block(block_cnf, sd_prob, norm_layer))
                block_id += 1
            layers.append(nn.Sequential(*stage))
        last_in = inverted_residual_setting[-1].out_channels
        last_out = last_channel if last_channel is not None else 4 * last_in
        layers.append(
            Conv2dNormActivation(
                last_in, last_out, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.SiLU
            )
        )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout, inplace=True), nn.Linear(last_out, num_classes)
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                init_range = 1.0 / math.sqrt(m.out_features)
                nn.init.uniform_(m.weight, -init_range, init_range)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(ember.flatten(self.avgpool(self.features(x)), 1))


class EfficientNet_B0_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.efficientnet_b0`.

    ``IMAGENET1K_V1`` is torchvision's ImageNet-1k checkpoint (bicubic preprocessing);
    ``DEFAULT`` aliases it.

    Each entry's ``transforms()`` builds its inference preset (resize, centre crop,
    ImageNet normalization), ``meta`` holds details such as ``num_params``, and
    ``get_state_dict()`` downloads the checkpoint.
    """

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/efficientnet_b0_rwightman-7f5810bc.pth",
        transforms=_imagenet_transforms(224, 256, InterpolationMode.BICUBIC),
        meta={"num_params": 5288548, "min_size": (1, 1)},
    )
    DEFAULT = IMAGENET1K_V1


@handle_legacy_interface(EfficientNet_B0_Weights)
def efficientnet_b0(
    *, weights: EfficientNet_B0_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> EfficientNet:
    """EfficientNet-B0; ``weights=EfficientNet_B0_Weights.DEFAULT`` for ImageNet."""
    weights = EfficientNet_B0_Weights.verify(weights)
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    c = partial(MBConvConfig, width_mult=1.0, depth_mult=1.0)
    setting = [
        c(1, 3, 1, 32, 16, 1),
        c(6, 3, 2, 16, 24, 2),
        c(6, 5, 2, 24, 40, 2),
        c(6, 3, 2, 40, 80, 3),
        c(6, 5, 1, 80, 112, 3),
        c(6, 5, 2, 112, 192, 4),
        c(6, 3, 1, 192, 320, 1),
    ]
    model = EfficientNet(setting, kwargs.pop("dropout", 0.2), **kwargs)
    return load_weights(model, weights, progress)
