"""MobileNetV2 (Sandler et al., 2018) with torchvision's module names."""

from __future__ import annotations

from collections.abc import Callable
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
from ._ops import Conv2dNormActivation, init_weights, make_divisible

__all__ = ["MobileNetV2", "MobileNet_V2_Weights", "mobilenet_v2"]


class InvertedResidual(nn.Module):
    def __init__(
        self,
        inp: int,
        oup: int,
        stride: int,
        expand_ratio: int,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride}")
        norm_layer = norm_layer or nn.BatchNorm2d
        self.stride = stride
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(
                Conv2dNormActivation(
                    inp, hidden, kernel_size=1, norm_layer=norm_layer, activation_layer=nn.ReLU6
                )
            )
        layers += [
            Conv2dNormActivation(
                hidden,
                hidden,
                stride=stride,
                groups=hidden,
                norm_layer=norm_layer,
                activation_layer=nn.ReLU6,
            ),
            nn.Conv2d(hidden, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup
        self._is_cn = stride > 1

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """A MobileNetV2 image classifier (Sandler et al., 2018).

    A 3x3 stem, inverted residual blocks with linear bottlenecks, a 1x1 head convolution,
    global average pooling, dropout and a linear classifier. Takes ``(N, 3, H, W)`` images and
    returns ``(N, num_classes)`` logits.

    Args:
        num_classes: the number of output classes.
        width_mult: the channel multiplier.
        inverted_residual_setting: rows ``[t, c, n, s]`` (expansion, output channels, number of
            blocks, first stride), one per stage; the paper's setting when ``None``.
        round_nearest: channel counts are rounded to a multiple of this.
        block: the block constructor, the inverted residual block by default.
        norm_layer: the normalization layer constructor, ``nn.BatchNorm2d`` by default.
        dropout: the dropout probability before the classifier.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        inverted_residual_setting: list[list[int]] | None = None,
        round_nearest: int = 8,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        block = block or InvertedResidual
        norm_layer = norm_layer or nn.BatchNorm2d
        setting = inverted_residual_setting or [
            [1, 16, 1, 1],
            [6, 24, 2, 2],
            [6, 32, 3, 2],
            [6, 64, 4, 2],
            [6, 96, 3, 1],
            [6, 160, 3, 2],
            [6, 320, 1, 1],
        ]
        if len(setting) == 0 or len(setting[0]) != 4:
            raise ValueError(
                f"inverted_residual_setting should be non-empty or a 4-element list, got {setting}"
            )
        input_channel = make_divisible(32 * width_mult, round_nearest)
        self.last_channel = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [
            Conv2dNormActivation(
                3, input_channel, stride=2, norm_layer=norm_layer, activation_layer=nn.ReLU6
            )
        ]
        for t, c, n, s in setting:
            output_channel = make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(
                    block(
                        input_channel,
                        output_channel,
                        s if i == 0 else 1,
                        expand_ratio=t,
                        norm_layer=norm_layer,
                    )
                )
                input_channel = output_channel
        features.append(
            Conv2dNormActivation(
                input_channel,
                self.last_channel,
                kernel_size=1,
                norm_layer=norm_layer,
                activation_layer=nn.ReLU6,
            )
        )
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(ember.flatten(x, 1))


class MobileNet_V2_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.mobilenet_v2`.

    ``IMAGENET1K_V1`` and the newer ``IMAGENET1K_V2`` are torchvision's ImageNet-1k
    checkpoints; ``DEFAULT`` aliases ``IMAGENET1K_V2``.

    Each entry's ``transforms()`` builds its inference preset (resize, centre crop,
    ImageNet normalization), ``meta`` holds details such as ``num_params``, and
    ``get_state_dict()`` downloads the checkpoint.
    """

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        transforms=_imagenet_transforms(224),
        meta={"num_params": 3504872, "min_size": (1, 1)},
    )
    IMAGENET1K_V2 = Weights(
        url="https://download.pytorch.org/models/mobilenet_v2-7ebf99e0.pth",
        transforms=_imagenet_transforms(224, resize_size=232),
        meta={"num_params": 3504872, "min_size": (1, 1)},
    )
    DEFAULT = IMAGENET1K_V2


@handle_legacy_interface(MobileNet_V2_Weights)
def mobilenet_v2(
    *, weights: MobileNet_V2_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> MobileNetV2:
    """MobileNetV2; ``weights=MobileNet_V2_Weights.DEFAULT`` loads torchvision's weights."""
    weights = MobileNet_V2_Weights.verify(weights)
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    return load_weights(MobileNetV2(**kwargs), weights, progress)
