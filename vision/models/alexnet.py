"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012; the one-GPU variant of "One weird trick")
with torchvision's module names.

``features`` (five convolutions, three 3x3 stride-2 max pools), ``avgpool`` to 6x6 and the
dropout-first ``classifier``: torchvision's ``state_dict`` keys, so its checkpoints load with
``load_state_dict``. bentrevett/pytorch-image-classification's AlexNet notebook builds it with
``models.alexnet(pretrained=True)`` to show the learned first-layer filters.
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

__all__ = ["AlexNet", "AlexNet_Weights", "alexnet"]


class AlexNet(nn.Module):
    """An AlexNet image classifier. Takes ``(N, 3, H, W)`` images (H, W >= 63) and returns
    ``(N, num_classes)`` logits.

    Args:
        num_classes: the number of output classes.
        dropout: the dropout probability before each of the first two linear layers.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        # (out channels, kernel, stride, padding) per convolution; a pool follows the 1st,
        # 2nd and 5th
        convs = [(64, 11, 4, 2), (192, 5, 1, 2), (384, 3, 1, 1), (256, 3, 1, 1), (256, 3, 1, 1)]
        layers: list[nn.Module] = []
        in_channels = 3
        for i, (out, k, s, p) in enumerate(convs):
            layers += [nn.Conv2d(in_channels, out, k, stride=s, padding=p), nn.ReLU(inplace=True)]
            if i in (0, 1, 4):
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
            in_channels = out
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(x.flatten(1))


class AlexNet_Weights(WeightsEnum):
    """Pretrained weights for :func:`alexnet` (torchvision's ImageNet-1k checkpoint;
    ``DEFAULT`` aliases it; ``get_state_dict()`` downloads it)."""

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        transforms=_imagenet_transforms(224),
        meta={
            "min_size": (63, 63),
            "categories": None,
            "recipe": "https://github.com/pytorch/vision/tree/main/references/classification",
            "num_params": 61100840,
        },
    )
    DEFAULT = IMAGENET1K_V1


@handle_legacy_interface(AlexNet_Weights)
def alexnet(
    *, weights: AlexNet_Weights | str | None = None, progress: bool = True, **kwargs: Any
) -> AlexNet:
    """AlexNet; ``weights=AlexNet_Weights.DEFAULT`` (or the legacy ``pretrained=True``) loads
    torchvision's ImageNet weights."""
    weights = AlexNet_Weights.verify(weights)
    if weights is not None and weights.meta["categories"] is not None:
        _ovewrite_named_param(kwargs, "num_classes", len(weights.meta["categories"]))
    return load_weights(AlexNet(**kwargs), weights, progress)
