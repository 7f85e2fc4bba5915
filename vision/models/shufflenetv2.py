"""ShuffleNet V2 (Ma et al., 2018) with torchvision's module names.

Each unit splits (stride 1) or duplicates (stride 2) its input into two branches, runs
1x1 -> depthwise 3x3 -> 1x1 on one (and depthwise -> 1x1 on the other when downsampling),
concatenates and shuffles the channels of the two halves.
"""

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

__all__ = [
    "ShuffleNetV2",
    "ShuffleNet_V2_X0_5_Weights",
    "ShuffleNet_V2_X1_0_Weights",
    "ShuffleNet_V2_X1_5_Weights",
    "ShuffleNet_V2_X2_0_Weights",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Interleave ``groups`` channel groups: ``(N, g*c, H, W)`` -> view ``(N, g, c, H, W)``,
    swap ``g`` and ``c``, flatten back."""
    batchsize, num_channels, height, width = x.size()
    x = x.view(batchsize, groups, num_channels // groups, height, width)
    x = ember.transpose(x, 1, 2).contiguous()
    return x.view(batchsize, -1, height, width)


class InvertedResidual(nn.Module):
    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError(f"illegal stride value {stride}: 1, 2 or 3 expected")
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != branch_features << 1:
            raise ValueError(
                f"Invalid combination of stride {stride}, inp {inp} and oup {oup} values. "
                "If stride == 1 then inp should be equal to oup // 2 << 1."
            )
        if stride > 1:
            self.branch1 = nn.Sequential(
                self.depthwise_conv(inp, inp, kernel_size=3, stride=stride, padding=1),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(
                inp if stride > 1 else branch_features,
                branch_features,
                kernel_size=1,
                stride=1,
                padding=0,
                bias=False,
            ),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            self.depthwise_conv(
                branch_features, branch_features, kernel_size=3, stride=stride, padding=1
            ),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(
                branch_features, branch_features, kernel_size=1, stride=1, padding=0, bias=False
            ),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    @staticmethod
    def depthwise_conv(
        i: int, o: int, kernel_size: int, stride: int = 1, padding: int = 0, bias: bool = False
    ) -> nn.Conv2d:
        return nn.Conv2d(i, o, kernel_size, stride, padding, bias=bias, groups=i)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = ember.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = ember.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """ShuffleNet V2: takes ``(N, 3, H, W)`` images and returns ``(N, num_classes)`` logits.

    Args:
        stages_repeats: units in ``stage2``, ``stage3``, ``stage4`` (3 ints).
        stages_out_channels: channels of ``conv1``, the three stages and ``conv5`` (5 ints).
        num_classes: the number of output classes.
        inverted_residual: the unit class.
    """

    def __init__(
        self,
        stages_repeats: list[int],
        stages_out_channels: list[int],
        num_classes: int = 1000,
        inverted_residual: Callable[..., nn.Module] = InvertedResidual,
    ) -> None:
        super().__init__()
        if len(stages_repeats) != 3:
            raise ValueError("expected stages_repeats as list of 3 positive ints")
        if len(stages_out_channels) != 5:
            raise ValueError("expected stages_out_channels as list of 5 positive ints")
        self._stage_out_channels = stages_out_channels

        input_channels, output_channels = 3, stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        input_channels = output_channels
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        for name, repeats, output_channels in zip(
            ("stage2", "stage3", "stage4"), stages_repeats, stages_out_channels[1:]
        ):
            seq = [inverted_residual(input_channels, output_channels, 2)]
            seq += [
                inverted_residual(output_channels, output_channels, 1) for _ in range(repeats - 1)
            ]
            setattr(self, name, nn.Sequential(*seq))
            input_channels = output_channels
        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(output_channels),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(output_channels, num_classes)

    def _forward_impl(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
        return self.fc(x.mean([2, 3]))  # global average pool

    def forward(self, x: Tensor) -> Tensor:
        return self._forward_impl(x)


def _shufflenetv2(
    weights: WeightsEnum | None, progress: bool, *args: Any, **kwargs: Any
) -> ShuffleNetV2:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    return load_weights(ShuffleNetV2(*args, **kwargs), weights, progress)


def _weights(url: str, num_params: int, resize_size: int = 256) -> Weights:
    return Weights(
        url="https://download.pytorch.org/models/" + url,
        transforms=_imagenet_transforms(224, resize_size),
        meta={"num_params": num_params, "min_size": (1, 1), "categories": None},
    )


class ShuffleNet_V2_X0_5_Weights(WeightsEnum):
    """Pretrained weights for :func:`shufflenet_v2_x0_5` (torchvision's ImageNet-1k)."""

    IMAGENET1K_V1 = _weights("shufflenetv2_x0.5-f707e7126e.pth", 1366792)
    DEFAULT = IMAGENET1K_V1


class ShuffleNet_V2_X1_0_Weights(WeightsEnum):
    """Pretrained weights for :func:`shufflenet_v2_x1_0` (torchvision's ImageNet-1k)."""

    IMAGENET1K_V1 = _weights("shufflenetv2_x1-5666bf0f80.pth", 2278604)
    DEFAULT = IMAGENET1K_V1


class ShuffleNet_V2_X1_5_Weights(WeightsEnum):
    """Pretrained weights for :func:`shufflenet_v2_x1_5` (torchvision's ImageNet-1k)."""

    IMAGENET1K_V1 = _weights("shufflenetv2_x1_5-3c479a10.pth", 3503624, 232)
    DEFAULT = IMAGENET1K_V1


class ShuffleNet_V2_X2_0_Weights(WeightsEnum):
    """Pretrained weights for :func:`shufflenet_v2_x2_0` (torchvision's ImageNet-1k)."""

    IMAGENET1K_V1 = _weights("shufflenetv2_x2_0-8be3c8ee.pth", 7393996, 232)
    DEFAULT = IMAGENET1K_V1


@handle_legacy_interface(ShuffleNet_V2_X0_5_Weights)
def shufflenet_v2_x0_5(
    *, weights: ShuffleNet_V2_X0_5_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ShuffleNetV2:
    """ShuffleNet V2 with 0.5x output channels; ``kwargs`` go to :class:`ShuffleNetV2`."""
    weights = ShuffleNet_V2_X0_5_Weights.verify(weights)
    return _shufflenetv2(weights, progress, [4, 8, 4], [24, 48, 96, 192, 1024], **kwargs)


@handle_legacy_interface(ShuffleNet_V2_X1_0_Weights)
def shufflenet_v2_x1_0(
    *, weights: ShuffleNet_V2_X1_0_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ShuffleNetV2:
    """ShuffleNet V2 with 1.0x output channels; ``kwargs`` go to :class:`ShuffleNetV2`."""
    weights = ShuffleNet_V2_X1_0_Weights.verify(weights)
    return _shufflenetv2(weights, progress, [4, 8, 4], [24, 116, 232, 464, 1024], **kwargs)


@handle_legacy_interface(ShuffleNet_V2_X1_5_Weights)
def shufflenet_v2_x1_5(
    *, weights: ShuffleNet_V2_X1_5_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ShuffleNetV2:
    """ShuffleNet V2 with 1.5x output channels; ``kwargs`` go to :class:`ShuffleNetV2`."""
    weights = ShuffleNet_V2_X1_5_Weights.verify(weights)
    return _shufflenetv2(weights, progress, [4, 8, 4], [24, 176, 352, 704, 1024], **kwargs)


@handle_legacy_interface(ShuffleNet_V2_X2_0_Weights)
def shufflenet_v2_x2_0(
    *, weights: ShuffleNet_V2_X2_0_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ShuffleNetV2:
    """ShuffleNet V2 with 2.0x output channels; ``kwargs`` go to :class:`ShuffleNetV2`."""
    weights = ShuffleNet_V2_X2_0_Weights.verify(weights)
    return _shufflenetv2(weights, progress, [4, 8, 4], [24, 244, 488, 976, 2048], **kwargs)
