"""Video ResNets (Tran et al., 2018): R3D (3x3x3 convolutions), MC3 (3-D in the first stage,
2-D after) and R(2+1)D (each 3x3x3 factorised into a 1x3x3 spatial and a 3x1x1 temporal
convolution), as torchvision.models.video. Inputs are clips ``(N, 3, T, H, W)``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import ember
from ember import nn
from ember.tensor import Tensor

from ...transforms._presets import VideoClassification
from .._api import (
    Weights,
    WeightsEnum,
    _ovewrite_named_param,
    handle_legacy_interface,
    load_weights,
)

__all__ = [
    "VideoResNet",
    "R3D_18_Weights",
    "MC3_18_Weights",
    "R2Plus1D_18_Weights",
    "r3d_18",
    "mc3_18",
    "r2plus1d_18",
]


class Conv3DSimple(nn.Conv3d):
    """A 3x3x3 convolution (stride in time and space)."""

    def __init__(self, in_planes, out_planes, midplanes=None, stride: int = 1, padding: int = 1):
        super().__init__(in_planes, out_planes, (3, 3, 3), stride, padding, bias=False)

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        return stride, stride, stride


class Conv2Plus1D(nn.Sequential):
    """A 1x3x3 spatial convolution to ``midplanes``, batch norm, ReLU, then a 3x1x1 temporal
    convolution (the (2+1)-D factorisation of a 3x3x3)."""

    def __init__(self, in_planes, out_planes, midplanes: int, stride: int = 1, padding: int = 1):
        super().__init__(
            nn.Conv3d(
                in_planes, midplanes, (1, 3, 3), (1, stride, stride), (0, padding, padding),
                bias=False,
            ),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(
                midplanes, out_planes, (3, 1, 1), (stride, 1, 1), (padding, 0, 0), bias=False
            ),
        )  # fmt: skip

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        return stride, stride, stride


class Conv3DNoTemporal(nn.Conv3d):
    """A 1x3x3 convolution (space only)."""

    def __init__(self, in_planes, out_planes, midplanes=None, stride: int = 1, padding: int = 1):
        super().__init__(
            in_planes, out_planes, (1, 3, 3), (1, stride, stride), (0, padding, padding),
            bias=False,
        )  # fmt: skip

    @staticmethod
    def get_downsample_stride(stride: int) -> tuple[int, int, int]:
        return 1, stride, stride


def _midplanes(inplanes: int, planes: int) -> int:
    # R(2+1)D's width: as many parameters as the 3x3x3 convolution it replaces
    return (inplanes * planes * 3 * 3 * 3) // (inplanes * 3 * 3 + 3 * planes)


class BasicBlock(nn.Module):
    """Two ``conv_builder`` convolutions with batch norm and a shortcut."""

    expansion = 1

    def __init__(self, inplanes, planes, conv_builder, stride: int = 1, downsample=None):
        super().__init__()
        mid = _midplanes(inplanes, planes)
        self.conv1 = nn.Sequential(
            conv_builder(inplanes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(True)
        )
        self.conv2 = nn.Sequential(conv_builder(planes, planes, mid), nn.BatchNorm3d(planes))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        # the shortcut after the main path, as torchvision (the order of the traced nodes)
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1x1x1, ``conv_builder`` and 1x1x1 convolutions with batch norm and a shortcut."""

    expansion = 4

    def __init__(self, inplanes, planes, conv_builder, stride: int = 1, downsample=None):
        super().__init__()
        mid = _midplanes(inplanes, planes)
        out = planes * self.expansion
        self.conv1 = nn.Sequential(
            nn.Conv3d(inplanes, planes, 1, bias=False), nn.BatchNorm3d(planes), nn.ReLU(True)
        )
        self.conv2 = nn.Sequential(
            conv_builder(planes, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(True)
        )
        self.conv3 = nn.Sequential(nn.Conv3d(planes, out, 1, bias=False), nn.BatchNorm3d(out))
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv3(self.conv2(self.conv1(x)))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class BasicStem(nn.Sequential):
    """3x7x7 convolution (spatial stride 2), batch norm, ReLU."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 64, (3, 7, 7), (1, 2, 2), (1, 3, 3), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


class R2Plus1dStem(nn.Sequential):
    """R(2+1)D's stem: 1x7x7 to 45 channels, then 3x1x1 to 64, each with batch norm and ReLU."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(3, 45, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(45, 64, (3, 1, 1), (1, 1, 1), (1, 0, 0), bias=False),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


class VideoResNet(nn.Module):
    """A video ResNet: ``stem``, four stages of ``block`` (each stage's convolutions from its
    entry of ``conv_makers``), global average pooling over time and space, a linear classifier.
    Takes ``(N, 3, T, H, W)`` clips and returns ``(N, num_classes)`` logits.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        conv_makers: four convolution classes (``Conv3DSimple``, ``Conv3DNoTemporal``,
            ``Conv2Plus1D``), one per stage.
        layers: the number of blocks in each stage.
        stem: the stem's constructor.
        num_classes: the number of output classes (Kinetics-400's 400 by default).
        zero_init_residual: zero each block's last batch-norm weight.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        conv_makers: Sequence[type],
        layers: list[int],
        stem: Callable[..., nn.Module],
        num_classes: int = 400,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.stem = stem()
        self.layer1 = self._make_layer(block, conv_makers[0], 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, conv_makers[1], 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, conv_makers[2], 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, conv_makers[3], 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.constant_(m.conv3[1].weight, 0)
                elif isinstance(m, BasicBlock):
                    nn.init.constant_(m.conv2[1].weight, 0)

    def _make_layer(self, block, conv_builder, planes: int, blocks: int, stride: int = 1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv3d(
                    self.inplanes, planes * block.expansion, 1,
                    stride=conv_builder.get_downsample_stride(stride), bias=False,
                ),
                nn.BatchNorm3d(planes * block.expansion),
            )  # fmt: skip
        layers = [block(self.inplanes, planes, conv_builder, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, conv_builder) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return self.fc(ember.flatten(self.avgpool(x), 1))


def _kinetics(name: str, num_params: int) -> Weights:
    return Weights(
        url=f"https://download.pytorch.org/models/{name}.pth",
        transforms=partial(VideoClassification, crop_size=(112, 112), resize_size=(128, 171)),
        meta={
            "num_params": num_params,
            "min_size": (1, 1),
            "categories": None,
            "recipe": "https://github.com/pytorch/vision/tree/main/references/video_classification",
        },
    )


class R3D_18_Weights(WeightsEnum):
    """torchvision's Kinetics-400 checkpoint for :func:`r3d_18`."""

    KINETICS400_V1 = _kinetics("r3d_18-b3b3357e", 33371472)
    DEFAULT = KINETICS400_V1


class MC3_18_Weights(WeightsEnum):
    """torchvision's Kinetics-400 checkpoint for :func:`mc3_18`."""

    KINETICS400_V1 = _kinetics("mc3_18-a90a0ba3", 11695440)
    DEFAULT = KINETICS400_V1


class R2Plus1D_18_Weights(WeightsEnum):
    """torchvision's Kinetics-400 checkpoint for :func:`r2plus1d_18`."""

    KINETICS400_V1 = _kinetics("r2plus1d_18-91a641e6", 31505325)
    DEFAULT = KINETICS400_V1


def _video_resnet(conv_makers, stem, weights, progress: bool, **kwargs: Any) -> VideoResNet:
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 400)
    model = VideoResNet(BasicBlock, conv_makers, [2, 2, 2, 2], stem, **kwargs)
    return load_weights(model, weights, progress)


def _legacy(enum):
    return lambda kwargs: enum.KINETICS400_V1


@handle_legacy_interface(_legacy(R3D_18_Weights))
def r3d_18(*, weights=None, progress: bool = True, **kwargs: Any) -> VideoResNet:
    """R3D-18: 3x3x3 convolutions throughout; ``weights=R3D_18_Weights.DEFAULT`` loads
    torchvision's Kinetics-400 checkpoint."""
    weights = R3D_18_Weights.verify(weights)
    return _video_resnet([Conv3DSimple] * 4, BasicStem, weights, progress, **kwargs)


@handle_legacy_interface(_legacy(MC3_18_Weights))
def mc3_18(*, weights=None, progress: bool = True, **kwargs: Any) -> VideoResNet:
    """MC3-18: 3x3x3 convolutions in the first stage, 1x3x3 (space only) after."""
    weights = MC3_18_Weights.verify(weights)
    makers = [Conv3DSimple] + [Conv3DNoTemporal] * 3
    return _video_resnet(makers, BasicStem, weights, progress, **kwargs)


@handle_legacy_interface(_legacy(R2Plus1D_18_Weights))
def r2plus1d_18(*, weights=None, progress: bool = True, **kwargs: Any) -> VideoResNet:
    """R(2+1)D-18: every 3x3x3 factorised into a 1x3x3 and a 3x1x1 convolution."""
    weights = R2Plus1D_18_Weights.verify(weights)
    return _video_resnet([Conv2Plus1D] * 4, R2Plus1dStem, weights, progress, **kwargs)
