"""S3D (Xie et al., 2018, "Rethinking Spatiotemporal Feature Learning"): an Inception network
whose 3-D convolutions are separated into a 1xkxk spatial and a kx1x1 temporal convolution, as
torchvision.models.video.s3d (the same module names, so its Kinetics-400 checkpoint loads).
Inputs are clips ``(N, 3, T, H, W)`` of at least 13 frames of 209x209 pixels."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import ember
from ember import nn
from ember.fx import Proxy
from ember.tensor import Tensor

from ...ops.misc import Conv3dNormActivation
from ...transforms._presets import VideoClassification
from .._api import (
    Weights,
    WeightsEnum,
    _ovewrite_named_param,
    handle_legacy_interface,
    load_weights,
)

__all__ = ["S3D", "S3D_Weights", "s3d"]


class TemporalSeparableConv(nn.Sequential):
    """A ``1 x k x k`` convolution (spatial stride) then a ``k x 1 x 1`` one (temporal
    stride), each followed by ``norm_layer`` and ReLU."""

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel_size: int,
        stride: int,
        padding: int,
        norm_layer: Callable[..., nn.Module],
    ) -> None:
        k, s, p = kernel_size, stride, padding
        super().__init__(
            Conv3dNormActivation(
                in_planes, out_planes, (1, k, k), (1, s, s), (0, p, p), bias=False,
                norm_layer=norm_layer,
            ),
            Conv3dNormActivation(
                out_planes, out_planes, (k, 1, 1), (s, 1, 1), (p, 0, 0), bias=False,
                norm_layer=norm_layer,
            ),
        )  # fmt: skip


class SepInceptionBlock3D(nn.Module):
    """Four branches concatenated on channels: a 1x1x1 convolution; 1x1x1 then a separable
    3x3x3 (twice, with different widths); a 3x3x3 max pool then 1x1x1."""

    def __init__(
        self,
        in_planes: int,
        b0_out: int,
        b1_mid: int,
        b1_out: int,
        b2_mid: int,
        b2_out: int,
        b3_out: int,
        norm_layer: Callable[..., nn.Module],
    ) -> None:
        super().__init__()
        conv1 = partial(Conv3dNormActivation, kernel_size=1, stride=1, norm_layer=norm_layer)
        sep3 = partial(TemporalSeparableConv, kernel_size=3, stride=1, padding=1)
        self.branch0 = conv1(in_planes, b0_out)
        self.branch1 = nn.Sequential(
            conv1(in_planes, b1_mid), sep3(b1_mid, b1_out, norm_layer=norm_layer)
        )
        self.branch2 = nn.Sequential(
            conv1(in_planes, b2_mid), sep3(b2_mid, b2_out, norm_layer=norm_layer)
        )
        self.branch3 = nn.Sequential(
            nn.MaxPool3d(kernel_size=(3, 3, 3), stride=1, padding=1), conv1(in_planes, b3_out)
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = (self.branch0, self.branch1, self.branch2, self.branch3)
        return ember.cat([b(x) for b in branches], 1)


def _out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def _feature_size(t: int, h: int, w: int) -> tuple[int, int, int]:
    """The ``(T, H, W)`` of ``S3D.features``' output for an input clip of ``(t, h, w)``."""
    for k, s, p in ((7, 2, 3), (3, 2, 1), (2, 2, 0)):  # the stem, the 3x3x3 and 2x2x2 pools
        t = _out(t, k, s, p)
    # the stem's 7x7 convolution, then four max pools (three 3x3, one 2x2), each stride 2
    for k, s, p in ((7, 2, 3), (3, 2, 1), (3, 2, 1), (3, 2, 1), (2, 2, 0)):
        h, w = _out(h, k, s, p), _out(w, k, s, p)
    return t, h, w


class S3D(nn.Module):
    """S3D: separable stem, five stages of separable Inception blocks, a ``2 x 7 x 7`` average
    pool, dropout and a 1x1x1 convolution classifier averaged over the remaining positions.
    Takes ``(N, 3, T, H, W)`` clips and returns ``(N, num_classes)`` logits.

    Args:
        num_classes: the number of output classes (Kinetics-400's 400 by default).
        dropout: the dropout probability before the classifier.
        norm_layer: the normalization layer (``BatchNorm3d(eps=1e-3, momentum=1e-3)`` by
            default, as the checkpoint was trained).
    """

    def __init__(
        self,
        num_classes: int = 400,
        dropout: float = 0.2,
        norm_layer: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if norm_layer is None:
            norm_layer = partial(nn.BatchNorm3d, eps=0.001, momentum=0.001)
        block = partial(SepInceptionBlock3D, norm_layer=norm_layer)
        self.features = nn.Sequential(
            TemporalSeparableConv(3, 64, 7, 2, 3, norm_layer),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            Conv3dNormActivation(64, 64, kernel_size=1, stride=1, norm_layer=norm_layer),
            TemporalSeparableConv(64, 192, 3, 1, 1, norm_layer),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            block(192, 64, 96, 128, 16, 32, 32),
            block(256, 128, 128, 192, 32, 96, 64),
            nn.MaxPool3d(kernel_size=(3, 3, 3), stride=(2, 2, 2), padding=(1, 1, 1)),
            block(480, 192, 96, 208, 16, 48, 64),
            block(512, 160, 112, 224, 24, 64, 64),
            block(512, 128, 128, 256, 24, 64, 64),
            block(512, 112, 144, 288, 32, 64, 64),
            block(528, 256, 160, 320, 32, 128, 128),
            nn.MaxPool3d(kernel_size=(2, 2, 2), stride=(2, 2, 2), padding=(0, 0, 0)),
            block(832, 256, 160, 320, 32, 128, 128),
            block(832, 384, 192, 384, 48, 128, 128),
        )
        self.avgpool = nn.AvgPool3d(kernel_size=(2, 7, 7), stride=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Conv3d(1024, num_classes, kernel_size=1, stride=1)
        )

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Proxy):  # checked on tensors; fx traces torchvision's graph
            _check_clip(x)
        x = self.classifier(self.avgpool(self.features(x)))
        return ember.mean(x, dim=(2, 3, 4))


def _check_clip(x: Tensor) -> None:
    if x.dim() != 5:
        raise ValueError(f"S3D expects clips (N, 3, T, H, W), got shape {tuple(x.shape)}")
    t, h, w = _feature_size(*x.shape[2:])
    if t < 2 or h < 7 or w < 7:
        # the 2x7x7 average pool needs at least 2x7x7 features: 13 frames of 209x209
        raise ValueError(
            f"S3D needs clips of at least 13 frames of 209x209 pixels (its features are "
            f"average-pooled over 2x7x7); got T, H, W = {tuple(x.shape[2:])}, which gives "
            f"{t}x{h}x{w} features"
        )


class S3D_Weights(WeightsEnum):
    """torchvision's Kinetics-400 checkpoint for :func:`s3d`."""

    KINETICS400_V1 = Weights(
        url="https://download.pytorch.org/models/s3d-d76dad2f.pth",
        transforms=partial(VideoClassification, crop_size=(224, 224), resize_size=(256, 256)),
        meta={
            "min_size": (224, 224),
            "min_temporal_size": 14,
            "categories": None,
            "recipe": "https://github.com/pytorch/vision/tree/main/references/video_classification#s3d",
            "num_params": 8320048,
            "_metrics": {"Kinetics-400": {"acc@1": 68.368, "acc@5": 88.050}},
        },
    )
    DEFAULT = KINETICS400_V1


@handle_legacy_interface(lambda kwargs: S3D_Weights.KINETICS400_V1)
def s3d(*, weights: S3D_Weights | str | None = None, progress: bool = True, **kwargs: Any) -> S3D:
    """S3D; ``weights=S3D_Weights.DEFAULT`` loads torchvision's Kinetics-400 checkpoint.
    ``kwargs`` go to :class:`S3D` (``num_classes``, ``dropout``, ``norm_layer``)."""
    weights = S3D_Weights.verify(weights)
    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 400)
    return load_weights(S3D(**kwargs), weights, progress)
