"""VGG (Simonyan and Zisserman, 2014) with torchvision's module names.

``features`` (3x3 convolutions, ReLU, 2x2 max pools; a BatchNorm after each convolution in the
``_bn`` variants), ``avgpool`` to 7x7 and the three-layer ``classifier``: torchvision's
``state_dict`` keys, so its checkpoints load with ``load_state_dict``.
"""

from __future__ import annotations

from typing import Any

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
    "VGG",
    "VGG11_Weights",
    "VGG11_BN_Weights",
    "VGG13_Weights",
    "VGG13_BN_Weights",
    "VGG16_Weights",
    "VGG16_BN_Weights",
    "VGG19_Weights",
    "VGG19_BN_Weights",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg19",
    "vgg19_bn",
]

# channels per convolution, "M" a 2x2 max pool (the paper's configurations A, B, D and E)
_CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M"]
    + [512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """A VGG image classifier: ``features``, adaptive average pooling to 7x7 and a
    ``Linear-ReLU-Dropout`` x2 + ``Linear`` classifier. Takes ``(N, 3, H, W)`` images and
    returns ``(N, num_classes)`` logits.

    Args:
        features: the convolutional trunk (see :func:`vgg16`), ending with 512 channels.
        num_classes: the number of output classes.
        init_weights: initialise as torchvision does (Kaiming for convolutions, N(0, 0.01) for
            the linear layers, zero biases).
        dropout: the dropout probability in the classifier.
    """

    def __init__(
        self,
        features: nn.Module,
        num_classes: int = 1000,
        init_weights: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, nn.Conv2d):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


def make_layers(cfg: list[int | str], batch_norm: bool = False) -> nn.Sequential:
    """The ``features`` trunk for ``cfg`` (channel counts and ``"M"`` pools)."""
    layers: list[nn.Module] = []
    in_channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(int(v)))
        layers.append(nn.ReLU(inplace=True))
        in_channels = int(v)
    return nn.Sequential(*layers)


_COMMON_META = {
    "min_size": (32, 32),
    "categories": None,
    "recipe": "https://github.com/pytorch/vision/tree/main/references/classification",
}


def _imagenet(file: str, num_params: int) -> Weights:
    """torchvision's ImageNet-1k checkpoint ``file``.pth of a VGG (224-pixel transforms)."""
    return Weights(
        url=f"https://download.pytorch.org/models/{file}.pth",
        transforms=_imagenet_transforms(224),
        meta={**_COMMON_META, "num_params": num_params},
    )


class VGG11_Weights(WeightsEnum):
    """Pretrained weights for :func:`vgg11` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _imagenet("vgg11-8a719046", 132863336)
    DEFAULT = IMAGENET1K_V1


class VGG11_BN_Weights(WeightsEnum):
    """Pretrained weights for :func:`vgg11_bn` (torchvision's ImageNet-1k checkpoint;
    bentrevett/pytorch-image-classification's VGG notebook fine-tunes it)."""

    IMAGENET1K_V1 = _imagenet("vgg11_bn-6002323d", 132868840)
    DEFAULT = IMAGENET1K_V1


class VGG13_Weights(WeightsEnum):
    """Pretrained weights for :func:`vgg13` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _imagenet("vgg13-19584684", 133047848)
    DEFAULT = IMAGENET1K_V1


class VGG13_BN_Weights(WeightsEnum):
    """Pretrained weights for :func:`vgg13_bn` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _imagenet("vgg13_bn-abd245e5", 133053736)
    DEFAULT = IMAGENET1K_V1


class VGG16_Weights(WeightsEnum):
    """Pretrained weights for :func:`vgg16` (torchvision's ImageNet-1k checkpoint;
    ``DEFAULT`` aliases it; ``get_state_dict()`` downloads it)."""

    IMAGENET1K_V1 = _imagenet("vgg16-397923af", 138357544)
    # the SSD authors' VGG-16 features, ssd300_vgg16's default backbone: the classifier is
    # untrained (no categories) and the inputs are 0-255 scaled, mean-subtracted
    IMAGENET1K_FEATURES = Weights(
        url="https://download.pytorch.org/models/vgg16_features-amdegroot-88682ab5.pth",
        transforms=_imagenet_transforms(224),
        meta={**_COMMON_META, "num_params": 138357544, "categories": None},
    )
    DEFAULT = IMAGENET1K_V1


class VGG16_BN_Weights(WeightsEnum):
    """Pretrained weights for :func:`vgg16_bn` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _imagenet("vgg16_bn-6c64b313", 138365992)
    DEFAULT = IMAGENET1K_V1


class VGG19_Weights(WeightsEnum):
    """Pretrained weights for :func:`vgg19` (torchvision's ImageNet-1k checkpoint; the neural
    style transfer tutorial's feature extractor)."""

    IMAGENET1K_V1 = _imagenet("vgg19-dcbb9e9d", 143667240)
    DEFAULT = IMAGENET1K_V1


class VGG19_BN_Weights(WeightsEnum):
    """Pretrained weights for :func:`vgg19_bn` (torchvision's ImageNet-1k checkpoint)."""

    IMAGENET1K_V1 = _imagenet("vgg19_bn-c79401a0", 143678248)
    DEFAULT = IMAGENET1K_V1


def _vgg(cfg: str, batch_norm: bool, weights, progress: bool, **kwargs: Any) -> VGG:
    if weights is not None:
        kwargs["init_weights"] = False
        if weights.meta["categories"] is not None:
            _ovewrite_named_param(kwargs, "num_classes", len(weights.meta["categories"]))
    model = VGG(make_layers(_CFGS[cfg], batch_norm=batch_norm), **kwargs)
    return load_weights(model, weights, progress)


@handle_legacy_interface(VGG11_Weights)
def vgg11(
    *, weights: VGG11_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VGG:
    """VGG-11 (configuration A); ``weights=VGG11_Weights.DEFAULT`` loads torchvision's
    ImageNet weights (from the hub cache: ember downloads nothing at run time)."""
    return _vgg("A", False, VGG11_Weights.verify(weights), progress, **kwargs)


@handle_legacy_interface(VGG11_BN_Weights)
def vgg11_bn(
    *, weights: VGG11_BN_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VGG:
    """VGG-11 (configuration A) with BatchNorm after each convolution."""
    return _vgg("A", True, VGG11_BN_Weights.verify(weights), progress, **kwargs)


@handle_legacy_interface(VGG13_Weights)
def vgg13(
    *, weights: VGG13_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VGG:
    """VGG-13 (configuration B)."""
    return _vgg("B", False, VGG13_Weights.verify(weights), progress, **kwargs)


@handle_legacy_interface(VGG13_BN_Weights)
def vgg13_bn(
    *, weights: VGG13_BN_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VGG:
    """VGG-13 with BatchNorm after each convolution."""
    return _vgg("B", True, VGG13_BN_Weights.verify(weights), progress, **kwargs)


@handle_legacy_interface(VGG16_Weights)
def vgg16(
    *, weights: VGG16_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VGG:
    """VGG-16 (configuration D); ``weights=VGG16_Weights.DEFAULT`` loads torchvision's
    ImageNet weights (fast_neural_style's perceptual loss uses ``vgg16(...).features``)."""
    return _vgg("D", False, VGG16_Weights.verify(weights), progress, **kwargs)


@handle_legacy_interface(VGG16_BN_Weights)
def vgg16_bn(
    *, weights: VGG16_BN_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VGG:
    """VGG-16 with BatchNorm after each convolution."""
    return _vgg("D", True, VGG16_BN_Weights.verify(weights), progress, **kwargs)


@handle_legacy_interface(VGG19_Weights)
def vgg19(
    *, weights: VGG19_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VGG:
    """VGG-19 (configuration E); ``weights=VGG19_Weights.DEFAULT`` loads torchvision's
    ImageNet weights."""
    return _vgg("E", False, VGG19_Weights.verify(weights), progress, **kwargs)


@handle_legacy_interface(VGG19_BN_Weights)
def vgg19_bn(
    *, weights: VGG19_BN_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> VGG:
    """VGG-19 with BatchNorm after each convolution."""
    return _vgg("E", True, VGG19_BN_Weights.verify(weights), progress, **kwargs)
