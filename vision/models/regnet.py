"""RegNet X / Y (Radosavovic et al., 2020) with torchvision's module names.

:class:`BlockParams` turns the paper's design-space parameters (depth, ``w_0``, ``w_a``,
``w_m``, group width, optional squeeze-excitation ratio) into per-stage widths and depths,
computed in float32 like torchvision so the quantised widths agree; :class:`RegNet` builds a
3x3 stem, one ``AnyStage`` of residual bottleneck blocks per stage, and a linear head.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np

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
from ._ops import Conv2dNormActivation, SqueezeExcitation, make_divisible

_NAMES = [f"regnet_y_{s}" for s in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")]
_NAMES += ["regnet_y_128gf"]
_NAMES += [f"regnet_x_{s}" for s in ("400mf", "800mf", "1_6gf", "3_2gf", "8gf", "16gf", "32gf")]
__all__ = ["RegNet", "BlockParams", *_NAMES] + [
    "RegNet_" + n[len("regnet_") :].upper() + "_Weights" for n in _NAMES if n != "regnet_y_128gf"
]


class SimpleStemIN(Conv2dNormActivation):
    """The ImageNet stem: 3x3 stride-2 conv, norm, activation."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        norm_layer: Callable[..., nn.Module],
        activation_layer: Callable[..., nn.Module],
    ) -> None:
        super().__init__(
            width_in,
            width_out,
            kernel_size=3,
            stride=2,
            norm_layer=norm_layer,
            activation_layer=activation_layer,
        )


class BottleneckTransform(nn.Sequential):
    """1x1 (``a``), grouped 3x3 (``b``), optional squeeze-excitation (``se``), 1x1 (``c``)."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        norm_layer: Callable[..., nn.Module],
        activation_layer: Callable[..., nn.Module],
        group_width: int,
        bottleneck_multiplier: float,
        se_ratio: float | None,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        w_b = int(round(width_out * bottleneck_multiplier))
        g = w_b // group_width
        cna = partial(Conv2dNormActivation, norm_layer=norm_layer)
        layers["a"] = cna(width_in, w_b, kernel_size=1, activation_layer=activation_layer)
        layers["b"] = cna(
            w_b, w_b, kernel_size=3, stride=stride, groups=g, activation_layer=activation_layer
        )
        if se_ratio:
            # the squeeze width is relative to the block's input width
            layers["se"] = SqueezeExcitation(
                input_channels=w_b,
                squeeze_channels=int(round(se_ratio * width_in)),
                activation=activation_layer,
            )
        layers["c"] = cna(w_b, width_out, kernel_size=1, activation_layer=None)
        super().__init__(layers)


class ResBottleneckBlock(nn.Module):
    """``activation(x + f(x))``, with a 1x1 projection of ``x`` when the shape changes."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        norm_layer: Callable[..., nn.Module],
        activation_layer: Callable[..., nn.Module],
        group_width: int = 1,
        bottleneck_multiplier: float = 1.0,
        se_ratio: float | None = None,
    ) -> None:
        super().__init__()
        self.proj = None
        if width_in != width_out or stride != 1:
            self.proj = Conv2dNormActivation(
                width_in,
                width_out,
                kernel_size=1,
                stride=stride,
                norm_layer=norm_layer,
                activation_layer=None,
            )
        self.f = BottleneckTransform(
            width_in,
            width_out,
            stride,
            norm_layer,
            activation_layer,
            group_width,
            bottleneck_multiplier,
            se_ratio,
        )
        self.activation = activation_layer(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.proj(x) + self.f(x) if self.proj is not None else x + self.f(x)
        return self.activation(x)


class AnyStage(nn.Sequential):
    """``depth`` blocks named ``block{stage_index}-{i}``; the first one strides."""

    def __init__(
        self,
        width_in: int,
        width_out: int,
        stride: int,
        depth: int,
        block_constructor: Callable[..., nn.Module],
        norm_layer: Callable[..., nn.Module],
        activation_layer: Callable[..., nn.Module],
        group_width: int,
        bottleneck_multiplier: float,
        se_ratio: float | None = None,
        stage_index: int = 0,
    ) -> None:
        super().__init__()
        for i in range(depth):
            block = block_constructor(
                width_in if i == 0 else width_out,
                width_out,
                stride if i == 0 else 1,
                norm_layer,
                activation_layer,
                group_width,
                bottleneck_multiplier,
                se_ratio,
            )
            self.add_module(f"block{stage_index}-{i}", block)


class BlockParams:
    """Per-stage settings of a RegNet: ``depths``, ``widths``, ``group_widths``,
    ``bottleneck_multipliers``, ``strides`` (lists, one entry per stage) and ``se_ratio``."""

    def __init__(
        self,
        depths: list[int],
        widths: list[int],
        group_widths: list[int],
        bottleneck_multipliers: list[float],
        strides: list[int],
        se_ratio: float | None = None,
    ) -> None:
        self.depths = depths
        self.widths = widths
        self.group_widths = group_widths
        self.bottleneck_multipliers = bottleneck_multipliers
        self.strides = strides
        self.se_ratio = se_ratio

    @classmethod
    def from_init_params(
        cls,
        depth: int,
        w_0: int,
        w_a: float,
        w_m: float,
        group_width: int,
        bottleneck_multiplier: float = 1.0,
        se_ratio: float | None = None,
        **kwargs: Any,
    ) -> BlockParams:
        """The paper's quantised linear widths: block ``j`` gets ``w_0 * w_m**round(log(
        (w_0 + j * w_a) / w_0) / log(w_m))`` rounded to a multiple of 8; consecutive blocks of
        one width form a stage (stride 2 each). Extra ``kwargs`` (a builder's model
        arguments) are ignored."""
        quant, stride = 8, 2
        if w_a < 0 or w_0 <= 0 or w_m <= 1 or w_0 % 8 != 0:
            raise ValueError(
                f"Invalid RegNet settings: need w_a >= 0, w_0 > 0 and a multiple of 8, w_m > 1; "
                f"got w_0={w_0}, w_a={w_a}, w_m={w_m}"
            )
        # float32 throughout, as torchvision computes it with default-dtype tensors
        f32 = np.float32
        widths_cont = np.arange(depth, dtype=f32) * f32(w_a) + f32(w_0)
        capacity = np.round(np.log(widths_cont / f32(w_0)) / f32(math.log(w_m)))
        block_widths = np.round(f32(w_0) * np.power(f32(w_m), capacity) / f32(quant)) * quant
        block_widths = block_widths.astype(np.int32).tolist()
        num_stages = len(set(block_widths))

        # a new stage starts wherever the width changes
        splits = [w != wp for w, wp in zip(block_widths + [0], [0] + block_widths)]
        stage_widths = [w for w, t in zip(block_widths, splits[:-1]) if t]
        stage_depths = np.diff([d for d, t in enumerate(splits) if t]).astype(int).tolist()

        strides = [stride] * num_stages
        bottleneck_multipliers = [bottleneck_multiplier] * num_stages
        group_widths = [group_width] * num_stages
        stage_widths, group_widths = cls._adjust_widths_groups_compatibilty(
            stage_widths, bottleneck_multipliers, group_widths
        )
        return cls(
            depths=stage_depths,
            widths=stage_widths,
            group_widths=group_widths,
            bottleneck_multipliers=bottleneck_multipliers,
            strides=strides,
            se_ratio=se_ratio,
        )

    def _get_expanded_params(self):
        return zip(
            self.widths, self.strides, self.depths, self.group_widths, self.bottleneck_multipliers
        )

    @staticmethod
    def _adjust_widths_groups_compatibilty(
        stage_widths: list[int], bottleneck_ratios: list[float], group_widths: list[int]
    ) -> tuple[list[int], list[int]]:
        """Make each stage's bottleneck width a multiple of its group width."""
        widths = [int(w * b) for w, b in zip(stage_widths, bottleneck_ratios)]
        group_widths_min = [min(g, w_bot) for g, w_bot in zip(group_widths, widths)]
        ws_bot = [make_divisible(w_bot, g) for w_bot, g in zip(widths, group_widths_min)]
        stage_widths = [int(w_bot / b) for w_bot, b in zip(ws_bot, bottleneck_ratios)]
        return stage_widths, group_widths_min


class RegNet(nn.Module):
    """A RegNet: takes ``(N, 3, H, W)`` images and returns ``(N, num_classes)`` logits.

    Args:
        block_params: the per-stage settings (:meth:`BlockParams.from_init_params`).
        num_classes: the number of output classes.
        stem_width: channels of the stem.
        stem_type: the stem class (``SimpleStemIN``).
        block_type: the block class (``ResBottleneckBlock``).
        norm_layer: the normalisation layer (``BatchNorm2d``).
        activation: the activation class (``ReLU``).
    """

    def __init__(
        self,
        block_params: BlockParams,
        num_classes: int = 1000,
        stem_width: int = 32,
        stem_type: Callable[..., nn.Module] | None = None,
        block_type: Callable[..., nn.Module] | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
        activation: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        stem_type = stem_type or SimpleStemIN
        norm_layer = norm_layer or nn.BatchNorm2d
        block_type = block_type or ResBottleneckBlock
        activation = activation or nn.ReLU
        self.stem = stem_type(3, stem_width, norm_layer, activation)

        current_width = stem_width
        blocks = []
        for i, (width_out, stride, depth, group_width, bottleneck_multiplier) in enumerate(
            block_params._get_expanded_params()
        ):
            stage = AnyStage(
                current_width,
                width_out,
                stride,
                depth,
                block_type,
                norm_layer,
                activation,
                group_width,
                bottleneck_multiplier,
                block_params.se_ratio,
                stage_index=i + 1,
            )
            blocks.append((f"block{i + 1}", stage))
            current_width = width_out
        self.trunk_output = nn.Sequential(OrderedDict(blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_features=current_width, out_features=num_classes)

        # ResNet-style initialisation (the convolutions have no bias: BN follows)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, mean=0.0, std=math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.trunk_output(self.stem(x)))
        return self.fc(x.flatten(start_dim=1))


def _regnet(
    block_params: BlockParams, weights: WeightsEnum | None, progress: bool, **kwargs: Any
) -> RegNet:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    norm_layer = kwargs.pop("norm_layer", partial(nn.BatchNorm2d, eps=1e-05, momentum=0.1))
    return load_weights(RegNet(block_params, norm_layer=norm_layer, **kwargs), weights, progress)


# name: (depth, w_0, w_a, w_m, group_width, se_ratio, V1 file, num_params)
_CONFIGS = {
    "regnet_y_400mf": (16, 48, 27.89, 2.09, 8, 0.25, "c65dace8", 4344144),
    "regnet_y_800mf": (14, 56, 38.84, 2.4, 16, 0.25, "1b27b58c", 6432512),
    "regnet_y_1_6gf": (27, 48, 20.71, 2.65, 24, 0.25, "b11a554e", 11202430),
    "regnet_y_3_2gf": (21, 80, 42.63, 2.66, 24, 0.25, "b5a9779c", 19436338),
    "regnet_y_8gf": (17, 192, 76.82, 2.19, 56, 0.25, "d0d0e4a8", 39381472),
    "regnet_y_16gf": (18, 200, 106.23, 2.48, 112, 0.25, "9e6ed7dd", 83590140),
    "regnet_y_32gf": (20, 232, 115.89, 2.53, 232, 0.25, "4dee3f7a", 145046770),
    "regnet_y_128gf": (27, 456, 160.83, 2.52, 264, 0.25, None, 644812894),
    "regnet_x_400mf": (22, 24, 24.48, 2.54, 16, None, "adf1edd5", 5495976),
    "regnet_x_800mf": (16, 56, 35.73, 2.28, 16, None, "ad17e45c", 7259656),
    "regnet_x_1_6gf": (18, 80, 34.01, 2.25, 24, None, "e3633e7f", 9190136),
    "regnet_x_3_2gf": (25, 88, 26.31, 2.25, 48, None, "f342aeae", 15296552),
    "regnet_x_8gf": (23, 80, 49.56, 2.88, 120, None, "03ceed89", 39572648),
    "regnet_x_16gf": (22, 216, 55.59, 2.1, 128, None, "2007eb11", 54278536),
    "regnet_x_32gf": (23, 320, 69.86, 2.0, 168, None, "9d47f8d0", 107811560),
}


def _make(name: str) -> tuple[type[WeightsEnum] | None, Callable[..., RegNet]]:
    depth, w_0, w_a, w_m, group_width, se_ratio, file, num_params = _CONFIGS[name]
    enum = None
    if file is not None:
        v1 = Weights(
            url=f"https://download.pytorch.org/models/{name}-{file}.pth",
            transforms=_imagenet_transforms(224),
            meta={"num_params": num_params, "min_size": (1, 1), "categories": None},
        )
        enum = WeightsEnum(
            "RegNet_" + name[len("regnet_") :].upper() + "_Weights",
            {"IMAGENET1K_V1": v1, "DEFAULT": v1},
            module=__name__,
        )
        enum.__doc__ = f"Pretrained weights for :func:`{name}` (torchvision's ImageNet-1k V1)."

    def builder(*, weights=None, progress: bool = True, **kwargs: Any) -> RegNet:
        if enum is not None:
            weights = enum.verify(weights)
        elif weights is not None:
            raise ValueError(f"{name}: ember has no pretrained weights entry for {name}")
        params = BlockParams.from_init_params(
            depth=depth, w_0=w_0, w_a=w_a, w_m=w_m, group_width=group_width,
            se_ratio=se_ratio, **kwargs,
        )  # fmt: skip
        return _regnet(params, weights, progress, **kwargs)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (
        f"{name.replace('_', ' ', 1)}: depth {depth}, w_0 {w_0}, w_a {w_a}, w_m {w_m}, group "
        f"width {group_width}" + (f", SE ratio {se_ratio}" if se_ratio else "")
        + "; ``kwargs`` go to :class:`RegNet`."
    )  # fmt: skip
    builder = handle_legacy_interface(enum)(builder)
    return enum, builder


for _name in _NAMES:
    _enum, _builder = _make(_name)
    globals()[_name] = _builder
    if _enum is not None:
        globals()[_enum.__name__] = _enum
del _name, _enum, _builder
