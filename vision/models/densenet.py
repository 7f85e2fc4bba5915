"""DenseNet-BC (Huang et al., 2016) with torchvision's module names.

Each dense layer sees the concatenation of every earlier feature map of its block
(BN -> ReLU -> 1x1 conv -> BN -> ReLU -> 3x3 conv, ``growth_rate`` new channels); transitions
halve channels and resolution. ``memory_efficient`` recomputes the bottleneck in backward
(``ember.utils.checkpoint``). The ``state_dict`` keys are torchvision's, and the old
``denselayerN.norm.1``-style keys of the original checkpoints are renamed on load.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import ember
import ember.utils.checkpoint as cp
from ember import nn
from ember.nn import functional as F
from ember.tensor import Tensor

from ._api import (
    Weights,
    WeightsEnum,
    _imagenet_transforms,
    _ovewrite_named_param,
    handle_legacy_interface,
)

__all__ = [
    "DenseNet",
    "DenseNet121_Weights",
    "DenseNet161_Weights",
    "DenseNet169_Weights",
    "DenseNet201_Weights",
    "densenet121",
    "densenet161",
    "densenet169",
    "densenet201",
]


class _DenseLayer(nn.Module):
    def __init__(
        self,
        num_input_features: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(
            num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False
        )
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def bn_function(self, inputs: list[Tensor]) -> Tensor:
        return self.conv1(self.relu1(self.norm1(ember.cat(inputs, 1))))

    def forward(self, input: Tensor | list[Tensor]) -> Tensor:
        prev = [input] if isinstance(input, Tensor) else list(input)
        if self.memory_efficient and any(t.requires_grad for t in prev):
            bottleneck = cp.checkpoint(
                lambda *xs: self.bn_function(list(xs)), *prev, use_reentrant=False
            )
        else:
            bottleneck = self.bn_function(prev)
        new_features = self.conv2(self.relu2(self.norm2(bottleneck)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class _DenseBlock(nn.ModuleDict):
    _version = 2

    def __init__(
        self,
        num_layers: int,
        num_input_features: int,
        bn_size: int,
        growth_rate: int,
        drop_rate: float,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(
                num_input_features + i * growth_rate,
                growth_rate=growth_rate,
                bn_size=bn_size,
                drop_rate=drop_rate,
                memory_efficient=memory_efficient,
            )
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, init_features: Tensor) -> Tensor:
        features = [init_features]
        for _, layer in self.items():
            features.append(layer(features))
        return ember.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(
            num_input_features, num_output_features, kernel_size=1, stride=1, bias=False
        )
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(nn.Module):
    """DenseNet-BC: takes ``(N, 3, H, W)`` images and returns ``(N, num_classes)`` logits.

    Args:
        growth_rate: channels each dense layer adds (``k`` in the paper).
        block_config: the number of layers in each of the four dense blocks.
        num_init_features: channels of the stem convolution.
        bn_size: bottleneck width as a multiple of ``growth_rate``.
        drop_rate: dropout after each dense layer.
        num_classes: the number of output classes.
        memory_efficient: recompute each layer's bottleneck in backward (checkpointing):
            less memory, slower.
    """

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: tuple[int, int, int, int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0,
        num_classes: int = 1000,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            OrderedDict(
                [
                    (
                        "conv0",
                        nn.Conv2d(
                            3, num_init_features, kernel_size=7, stride=2, padding=3, bias=False
                        ),
                    ),
                    ("norm0", nn.BatchNorm2d(num_init_features)),
                    ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
                ]
            )
        )
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            block = _DenseBlock(
                num_layers=num_layers,
                num_input_features=num_features,
                bn_size=bn_size,
                growth_rate=growth_rate,
                drop_rate=drop_rate,
                memory_efficient=memory_efficient,
            )
            self.features.add_module(f"denseblock{i + 1}", block)
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                trans = _Transition(num_features, num_features // 2)
                self.features.add_module(f"transition{i + 1}", trans)
                num_features = num_features // 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)

        # torchvision's ("official init from torch repo") initialisation
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.features(x), inplace=True)
        out = ember.flatten(F.adaptive_avg_pool2d(out, (1, 1)), 1)
        return self.classifier(out)


# The original checkpoints name a dense layer's modules "norm.1", "conv.2", ...
_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _load_state_dict(model: nn.Module, weights: WeightsEnum, progress: bool) -> None:
    state_dict = weights.get_state_dict(progress=progress, check_hash=True)
    for key in list(state_dict.keys()):
        res = _OLD_KEY.match(key)
        if res:
            state_dict[res.group(1) + res.group(2)] = state_dict.pop(key)
    # no check_state_dict pre-check: these checkpoints predate BatchNorm's
    # num_batches_tracked, which load_state_dict fills in for them
    model.load_state_dict(state_dict)


def _densenet(
    growth_rate: int,
    block_config: tuple[int, int, int, int],
    num_init_features: int,
    weights: WeightsEnum | None,
    progress: bool,
    **kwargs: Any,
) -> DenseNet:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    model = DenseNet(growth_rate, block_config, num_init_features, **kwargs)
    if weights is not None:
        _load_state_dict(model, weights, progress)
    return model


def _weights(url: str, num_params: int) -> Weights:
    return Weights(
        url=url,
        transforms=_imagenet_transforms(224),
        meta={
            "num_params": num_params,
            "min_size": (29, 29),
            "categories": None,
            "recipe": "https://github.com/pytorch/vision/pull/116",
        },
    )


_URL = "https://download.pytorch.org/models/"


class DenseNet121_Weights(WeightsEnum):
    """Pretrained weights for :func:`densenet121` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _weights(_URL + "densenet121-a639ec97.pth", 7978856)
    DEFAULT = IMAGENET1K_V1


class DenseNet161_Weights(WeightsEnum):
    """Pretrained weights for :func:`densenet161` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _weights(_URL + "densenet161-8d451a50.pth", 28681000)
    DEFAULT = IMAGENET1K_V1


class DenseNet169_Weights(WeightsEnum):
    """Pretrained weights for :func:`densenet169` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _weights(_URL + "densenet169-b2777c0a.pth", 14149480)
    DEFAULT = IMAGENET1K_V1


class DenseNet201_Weights(WeightsEnum):
    """Pretrained weights for :func:`densenet201` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _weights(_URL + "densenet201-c1103571.pth", 20013928)
    DEFAULT = IMAGENET1K_V1


@handle_legacy_interface(DenseNet121_Weights)
def densenet121(
    *, weights: DenseNet121_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-121 (growth 32, blocks 6-12-24-16); ``kwargs`` go to :class:`DenseNet`."""
    weights = DenseNet121_Weights.verify(weights)
    return _densenet(32, (6, 12, 24, 16), 64, weights, progress, **kwargs)


@handle_legacy_interface(DenseNet161_Weights)
def densenet161(
    *, weights: DenseNet161_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-161 (growth 48, blocks 6-12-36-24); ``kwargs`` go to :class:`DenseNet`."""
    weights = DenseNet161_Weights.verify(weights)
    return _densenet(48, (6, 12, 36, 24), 96, weights, progress, **kwargs)


@handle_legacy_interface(DenseNet169_Weights)
def densenet169(
    *, weights: DenseNet169_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-169 (growth 32, blocks 6-12-32-32); ``kwargs`` go to :class:`DenseNet`."""
    weights = DenseNet169_Weights.verify(weights)
    return _densenet(32, (6, 12, 32, 32), 64, weights, progress, **kwargs)


@handle_legacy_interface(DenseNet201_Weights)
def densenet201(
    *, weights: DenseNet201_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> DenseNet:
    """DenseNet-201 (growth 32, blocks 6-12-48-32); ``kwargs`` go to :class:`DenseNet`."""
    weights = DenseNet201_Weights.verify(weights)
    return _densenet(32, (6, 12, 48, 32), 64, weights, progress, **kwargs)
