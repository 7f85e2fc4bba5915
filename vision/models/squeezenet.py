"""SqueezeNet 1.0 / 1.1 (Iandola et al., 2016) with torchvision's module names.

Fire modules (a 1x1 squeeze convolution feeding parallel 1x1 and 3x3 expand convolutions,
concatenated), ceil-mode max pools and a convolutional classifier (dropout, 1x1 conv to
``num_classes``, ReLU, global average pool).
"""

from __future__ import annotations

from typing import Any

import ember
from ember import nn
from ember.nn import init
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
    "SqueezeNet",
    "SqueezeNet1_0_Weights",
    "SqueezeNet1_1_Weights",
    "squeezenet1_0",
    "squeezenet1_1",
]


class Fire(nn.Module):
    def __init__(
        self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int
    ) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return ember.cat(
            [
                self.expand1x1_activation(self.expand1x1(x)),
                self.expand3x3_activation(self.expand3x3(x)),
            ],
            1,
        )


class SqueezeNet(nn.Module):
    """SqueezeNet: takes ``(N, 3, H, W)`` images (H, W >= 21 for 1.0, 17 for 1.1) and returns
    ``(N, num_classes)`` logits.

    Args:
        version: ``"1_0"`` (the paper's) or ``"1_1"`` (2.4x less computation).
        num_classes: the number of output classes.
        dropout: dropout before the final convolution.
    """

    def __init__(self, version: str = "1_0", num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        self.num_classes = num_classes
        pool = dict(kernel_size=3, stride=2, ceil_mode=True)
        if version == "1_0":
            self.features = nn.Sequential(
                nn.Conv2d(3, 96, kernel_size=7, stride=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(**pool),
                Fire(96, 16, 64, 64),
                Fire(128, 16, 64, 64),
                Fire(128, 32, 128, 128),
                nn.MaxPool2d(**pool),
                Fire(256, 32, 128, 128),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                nn.MaxPool2d(**pool),
                Fire(512, 64, 256, 256),
            )
        elif version == "1_1":
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=3, stride=2),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(**pool),
                Fire(64, 16, 64, 64),
                Fire(128, 16, 64, 64),
                nn.MaxPool2d(**pool),
                Fire(128, 32, 128, 128),
                Fire(256, 32, 128, 128),
                nn.MaxPool2d(**pool),
                Fire(256, 48, 192, 192),
                Fire(384, 48, 192, 192),
                Fire(384, 64, 256, 256),
                Fire(512, 64, 256, 256),
            )
        else:
            raise ValueError(f"Unsupported SqueezeNet version {version}: 1_0 or 1_1 expected")

        final_conv = nn.Conv2d(512, self.num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # the final convolution starts small, the rest Kaiming-uniform (torchvision's)
                if m is final_conv:
                    init.normal_(m.weight, mean=0.0, std=0.01)
                else:
                    init.kaiming_uniform_(m.weight)
                if m.bias is not None:
                    init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        return ember.flatten(self.classifier(self.features(x)), 1)


def _squeezenet(
    version: str, weights: WeightsEnum | None, progress: bool, **kwargs: Any
) -> SqueezeNet:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    return load_weights(SqueezeNet(version, **kwargs), weights, progress)


_RECIPE = "https://github.com/pytorch/vision/pull/49#issuecomment-277560717"


class SqueezeNet1_0_Weights(WeightsEnum):
    """Pretrained weights for :func:`squeezenet1_0` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/squeezenet1_0-b66bff10.pth",
        transforms=_imagenet_transforms(224),
        meta={"num_params": 1248424, "min_size": (21, 21), "categories": None, "recipe": _RECIPE},
    )
    DEFAULT = IMAGENET1K_V1


class SqueezeNet1_1_Weights(WeightsEnum):
    """Pretrained weights for :func:`squeezenet1_1` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/squeezenet1_1-b8a52dc0.pth",
        transforms=_imagenet_transforms(224),
        meta={"num_params": 1235496, "min_size": (17, 17), "categories": None, "recipe": _RECIPE},
    )
    DEFAULT = IMAGENET1K_V1


@handle_legacy_interface(SqueezeNet1_0_Weights)
def squeezenet1_0(
    *, weights: SqueezeNet1_0_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SqueezeNet:
    """SqueezeNet 1.0 (the paper's); ``kwargs`` go to :class:`SqueezeNet`."""
    weights = SqueezeNet1_0_Weights.verify(weights)
    return _squeezenet("1_0", weights, progress, **kwargs)


@handle_legacy_interface(SqueezeNet1_1_Weights)
def squeezenet1_1(
    *, weights: SqueezeNet1_1_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> SqueezeNet:
    """SqueezeNet 1.1 (2.4x less computation than 1.0, same accuracy); ``kwargs`` go to
    :class:`SqueezeNet`."""
    weights = SqueezeNet1_1_Weights.verify(weights)
    return _squeezenet("1_1", weights, progress, **kwargs)
