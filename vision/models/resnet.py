"""ResNet (He et al., 2015) with torchvision's module names, so torchvision state_dicts load."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ember
from ember import nn
from ember.tensor import Tensor

from ._api import WeightsEnum, _ovewrite_named_param, handle_legacy_interface, load_weights
from ._resnet_weights import (  # (re-exported: the weight enums keep this module's name)
    _COMMON_META,  # noqa: F401
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
    ResNet152_Weights,
    ResNeXt50_32X4D_Weights,
    ResNeXt101_32X8D_Weights,
    ResNeXt101_64X4D_Weights,
    Wide_ResNet50_2_Weights,
    Wide_ResNet101_2_Weights,
)

__all__ = [
    "ResNet",
    "BasicBlock",
    "Bottleneck",
    "ResNet18_Weights",
    "ResNet34_Weights",
    "ResNet50_Weights",
    "ResNet101_Weights",
    "ResNet152_Weights",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "ResNeXt50_32X4D_Weights",
    "ResNeXt101_32X8D_Weights",
    "ResNeXt101_64X4D_Weights",
    "Wide_ResNet50_2_Weights",
    "Wide_ResNet101_2_Weights",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "resnext101_64x4d",
    "wide_resnet50_2",
    "wide_resnet101_2",
]


def conv3x3(
    in_planes: int, out_planes: int, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Conv2d:
    return nn.Conv2d(
        in_planes,
        out_planes,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        groups=groups,
        bias=False,
        dilation=dilation,
    )


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """The residual block of ResNet-18 and ResNet-34: two 3x3 convolutions with a shortcut.

    Args:
        inplanes: the number of input channels.
        planes: the number of output channels (``expansion`` is 1).
        stride: the stride of the first convolution.
        downsample: an optional module applied to the shortcut so that it matches the output
            shape.
        groups: must be 1.
        base_width: must be 64.
        dilation: must be 1.
        norm_layer: the normalization layer constructor, ``nn.BatchNorm2d`` by default.
    """

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        # the shortcut after the main path, as torchvision (hooks and traced graphs see
        # torchvision's call order)
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """The residual block of ResNet-50: 1x1, 3x3 and 1x1 convolutions with a shortcut.

    The stride sits on the 3x3 convolution (ResNet v1.5), and the block outputs
    ``planes * expansion`` channels, ``expansion`` being 4.

    Args:
        inplanes: the number of input channels.
        planes: the width of the block before expansion.
        stride: the stride of the 3x3 convolution.
        downsample: an optional module applied to the shortcut so that it matches the output
            shape.
        groups: the number of groups of the 3x3 convolution.
        base_width: the width per group; the inner width is
            ``int(planes * base_width / 64) * groups``.
        dilation: the dilation of the 3x3 convolution.
        norm_layer: the normalization layer constructor, ``nn.BatchNorm2d`` by default.
    """

    # The stride sits on the 3x3 convolution (ResNet v1.5), as in torchvision.
    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)  # torchvision's order
        return self.relu(out + identity)


class ResNet(nn.Module):
    """A ResNet image classifier (He et al., 2015).

    A 7x7 stem and max pooling, four stages of residual blocks, global average pooling and a
    linear classifier. Takes ``(N, 3, H, W)`` images and returns ``(N, num_classes)`` logits.

    Args:
        block: :class:`~ember.vision.models.BasicBlock` or
            :class:`~ember.vision.models.Bottleneck`.
        layers: the number of blocks in each of the four stages.
        num_classes: the number of output classes.
        zero_init_residual: set the weight of each block's last normalization layer to zero,
            so that every residual branch starts out contributing nothing.
        groups: the number of groups of the 3x3 convolutions in the blocks.
        width_per_group: the width per group in the blocks.
        replace_stride_with_dilation: three booleans, one per stage 2 to 4: replace the
            stage's stride with dilation.
        norm_layer: the normalization layer constructor, ``nn.BatchNorm2d`` by default.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: list[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: list[bool] | None = None,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self._norm_layer = norm_layer or nn.BatchNorm2d
        self.inplanes = 64
        self.dilation = 1
        replace_stride_with_dilation = replace_stride_with_dilation or [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                "replace_stride_with_dilation should be None or a 3-element tuple, "
                f"got {replace_stride_with_dilation}"
            )
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], 2, replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], 2, replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], 2, replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.bn3.weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)

    def _make_layer(
        self, block, planes: int, blocks: int, stride: int = 1, dilate: bool = False
    ) -> nn.Sequential:
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                norm_layer(planes * block.expansion),
            )
        layers = [
            block(
                self.inplanes,
                planes,
                stride,
                downsample,
                self.groups,
                self.base_width,
                previous_dilation,
                norm_layer,
            )
        ]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(
                block(
                    self.inplanes,
                    planes,
                    groups=self.groups,
                    base_width=self.base_width,
                    dilation=self.dilation,
                    norm_layer=norm_layer,
                )
            )
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = ember.flatten(self.avgpool(x), 1)
        return self.fc(x)


def _resnet(
    block, layers: list[int], weights: WeightsEnum | None, progress: bool, **kwargs: Any
) -> ResNet:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
    return load_weights(ResNet(block, layers, **kwargs), weights, progress)


@handle_legacy_interface(ResNet18_Weights)
def resnet18(
    *, weights: ResNet18_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNet-18; ``weights=ResNet18_Weights.DEFAULT`` loads torchvision's ImageNet weights."""
    return _resnet(BasicBlock, [2, 2, 2, 2], ResNet18_Weights.verify(weights), progress, **kwargs)


@handle_legacy_interface(ResNet34_Weights)
def resnet34(
    *, weights: ResNet34_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNet-34; ``weights=ResNet34_Weights.DEFAULT`` loads torchvision's ImageNet weights."""
    return _resnet(BasicBlock, [3, 4, 6, 3], ResNet34_Weights.verify(weights), progress, **kwargs)


@handle_legacy_interface(ResNet50_Weights)
def resnet50(
    *, weights: ResNet50_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNet-50; ``weights=ResNet50_Weights.DEFAULT`` loads torchvision's ImageNet weights."""
    return _resnet(Bottleneck, [3, 4, 6, 3], ResNet50_Weights.verify(weights), progress, **kwargs)


@handle_legacy_interface(ResNet101_Weights)
def resnet101(
    *, weights: ResNet101_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNet-101; ``weights=ResNet101_Weights.DEFAULT`` loads torchvision's ImageNet weights."""
    weights = ResNet101_Weights.verify(weights)
    return _resnet(Bottleneck, [3, 4, 23, 3], weights, progress, **kwargs)


@handle_legacy_interface(ResNet152_Weights)
def resnet152(
    *, weights: ResNet152_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNet-152; ``weights=ResNet152_Weights.DEFAULT`` loads torchvision's ImageNet weights."""
    weights = ResNet152_Weights.verify(weights)
    return _resnet(Bottleneck, [3, 8, 36, 3], weights, progress, **kwargs)


def _grouped(
    weights_enum: type[WeightsEnum],
    layers: list[int],
    groups: int,
    width_per_group: int,
    weights,
    progress: bool,
    kwargs: dict,
) -> ResNet:
    """A Bottleneck ResNet with grouped (ResNeXt) or widened 3x3 convolutions."""
    _ovewrite_named_param(kwargs, "groups", groups)
    _ovewrite_named_param(kwargs, "width_per_group", width_per_group)
    return _resnet(Bottleneck, layers, weights_enum.verify(weights), progress, **kwargs)


@handle_legacy_interface(ResNeXt50_32X4D_Weights)
def resnext50_32x4d(
    *, weights: ResNeXt50_32X4D_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNeXt-50 32x4d (Xie et al., 2017): ResNet-50 with 32 groups of width 4 in each 3x3."""
    return _grouped(ResNeXt50_32X4D_Weights, [3, 4, 6, 3], 32, 4, weights, progress, kwargs)


@handle_legacy_interface(ResNeXt101_32X8D_Weights)
def resnext101_32x8d(
    *, weights: ResNeXt101_32X8D_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNeXt-101 32x8d: ResNet-101 with 32 groups of width 8 in each 3x3."""
    return _grouped(ResNeXt101_32X8D_Weights, [3, 4, 23, 3], 32, 8, weights, progress, kwargs)


@handle_legacy_interface(ResNeXt101_64X4D_Weights)
def resnext101_64x4d(
    *, weights: ResNeXt101_64X4D_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """ResNeXt-101 64x4d: ResNet-101 with 64 groups of width 4 in each 3x3."""
    return _grouped(ResNeXt101_64X4D_Weights, [3, 4, 23, 3], 64, 4, weights, progress, kwargs)


@handle_legacy_interface(Wide_ResNet50_2_Weights)
def wide_resnet50_2(
    *, weights: Wide_ResNet50_2_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis, 2016): ResNet-50 with each block's inner 3x3
    twice as wide (the outer 1x1 widths are unchanged)."""
    return _grouped(Wide_ResNet50_2_Weights, [3, 4, 6, 3], 1, 128, weights, progress, kwargs)


@handle_legacy_interface(Wide_ResNet101_2_Weights)
def wide_resnet101_2(
    *, weights: Wide_ResNet101_2_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> ResNet:
    """Wide ResNet-101-2: ResNet-101 with each block's inner 3x3 twice as wide."""
    return _grouped(Wide_ResNet101_2_Weights, [3, 4, 23, 3], 1, 128, weights, progress, kwargs)
