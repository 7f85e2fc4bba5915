"""EfficientNet-B0 to B7 (Tan & Le, 2019) with torchvision's module names."""

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

_SIZES = range(8)
__all__ = [
    "EfficientNet",
    "MBConvConfig",
    *(f"EfficientNet_B{i}_Weights" for i in _SIZES),
    *(f"efficientnet_b{i}" for i in _SIZES),
]


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


def _weights(name: str, crop: int, resize: int, num_params: int, bilinear: bool = False):
    mode = InterpolationMode.BILINEAR if bilinear else InterpolationMode.BICUBIC
    return Weights(
        url=f"https://download.pytorch.org/models/{name}.pth",
        transforms=_imagenet_transforms(crop, resize, mode),
        meta={"num_params": num_params, "min_size": (1, 1)},
    )


_ENUM_DOC = """Pretrained weights for :func:`~ember.vision.models.efficientnet_b{0}`.

    ``IMAGENET1K_V1`` is torchvision's ImageNet-1k checkpoint (bicubic preprocessing){1};
    ``DEFAULT`` aliases {2}.

    Each entry's ``transforms()`` builds its inference preset (resize, centre crop,
    ImageNet normalization), ``meta`` holds details such as ``num_params``, and
    ``get_state_dict()`` downloads the checkpoint.
    """


def _doc(i: int) -> str:
    return _ENUM_DOC.format(i, "", "it")


class EfficientNet_B0_Weights(WeightsEnum):
    __doc__ = _doc(0)
    IMAGENET1K_V1 = _weights("efficientnet_b0_rwightman-7f5810bc", 224, 256, 5288548)
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B1_Weights(WeightsEnum):
    __doc__ = _ENUM_DOC.format(
        1, ", ``IMAGENET1K_V2`` its retrained one (bilinear, 79.8% top-1)", "``IMAGENET1K_V2``"
    )
    IMAGENET1K_V1 = _weights("efficientnet_b1_rwightman-bac287d4", 240, 256, 7794184)
    IMAGENET1K_V2 = _weights("efficientnet_b1-c27df63c", 240, 255, 7794184, bilinear=True)
    DEFAULT = IMAGENET1K_V2


class EfficientNet_B2_Weights(WeightsEnum):
    __doc__ = _doc(2)
    IMAGENET1K_V1 = _weights("efficientnet_b2_rwightman-c35c1473", 288, 288, 9109994)
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B3_Weights(WeightsEnum):
    __doc__ = _doc(3)
    IMAGENET1K_V1 = _weights("efficientnet_b3_rwightman-b3899882", 300, 320, 12233232)
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B4_Weights(WeightsEnum):
    __doc__ = _doc(4)
    IMAGENET1K_V1 = _weights("efficientnet_b4_rwightman-23ab8bcd", 380, 384, 19341616)
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B5_Weights(WeightsEnum):
    __doc__ = _doc(5)
    IMAGENET1K_V1 = _weights("efficientnet_b5_lukemelas-1a07897c", 456, 456, 30389784)
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B6_Weights(WeightsEnum):
    __doc__ = _doc(6)
    IMAGENET1K_V1 = _weights("efficientnet_b6_lukemelas-24a108a5", 528, 528, 43040704)
    DEFAULT = IMAGENET1K_V1


class EfficientNet_B7_Weights(WeightsEnum):
    __doc__ = _doc(7)
    IMAGENET1K_V1 = _weights("efficientnet_b7_lukemelas-c5b4e57e", 600, 600, 66347960)
    DEFAULT = IMAGENET1K_V1


def _efficientnet(
    width_mult: float,
    depth_mult: float,
    dropout: float,
    weights: WeightsEnum | None,
    progress: bool,
    norm_layer: Callable[..., nn.Module] | None = None,
    **kwargs: Any,
) -> EfficientNet:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    c = partial(MBConvConfig, width_mult=width_mult, depth_mult=depth_mult)
    setting = [
        c(1, 3, 1, 32, 16, 1),
        c(6, 3, 2, 16, 24, 2),
        c(6, 5, 2, 24, 40, 2),
        c(6, 3, 2, 40, 80, 3),
        c(6, 5, 1, 80, 112, 3),
        c(6, 5, 2, 112, 192, 4),
        c(6, 3, 1, 192, 320, 1),
    ]
    if norm_layer is not None:
        kwargs.setdefault("norm_layer", norm_layer)
    model = EfficientNet(setting, kwargs.pop("dropout", dropout), **kwargs)
    return load_weights(model, weights, progress)


# (width multiplier, depth multiplier, dropout) per size, as torchvision's builders
_SCALING = {
    0: (1.0, 1.0, 0.2),
    1: (1.0, 1.1, 0.2),
    2: (1.1, 1.2, 0.3),
    3: (1.2, 1.4, 0.3),
    4: (1.4, 1.8, 0.4),
    5: (1.6, 2.2, 0.4),
    6: (1.8, 2.6, 0.5),
    7: (2.0, 3.1, 0.5),
}


def _builder(i: int, enum: type[WeightsEnum]) -> Callable[..., EfficientNet]:
    # B5-B7 keep the batch-norm settings of the checkpoints they were ported from (lukemelas)
    norm = partial(nn.BatchNorm2d, eps=0.001, momentum=0.01) if i >= 5 else None

    def build(
        *, weights: WeightsEnum | str | None = None, progress: bool = True, **kwargs: Any
    ) -> EfficientNet:
        return _efficientnet(*_SCALING[i], enum.verify(weights), progress, norm, **kwargs)

    build.__name__ = build.__qualname__ = f"efficientnet_b{i}"
    build.__doc__ = (
        f"EfficientNet-B{i} ({enum.IMAGENET1K_V1.meta['num_params'] / 1e6:.1f} M parameters); "
        f"``weights=EfficientNet_B{i}_Weights.DEFAULT`` for ImageNet."
    )
    build.__annotations__["weights"] = f"EfficientNet_B{i}_Weights | str | None"
    return handle_legacy_interface(enum)(build)


efficientnet_b0 = _builder(0, EfficientNet_B0_Weights)
efficientnet_b1 = _builder(1, EfficientNet_B1_Weights)
efficientnet_b2 = _builder(2, EfficientNet_B2_Weights)
efficientnet_b3 = _builder(3, EfficientNet_B3_Weights)
efficientnet_b4 = _builder(4, EfficientNet_B4_Weights)
efficientnet_b5 = _builder(5, EfficientNet_B5_Weights)
efficientnet_b6 = _builder(6, EfficientNet_B6_Weights)
efficientnet_b7 = _builder(7, EfficientNet_B7_Weights)
