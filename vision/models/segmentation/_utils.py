"""The backbone + head(s) wrapper the segmentation models share."""

from __future__ import annotations

from collections import OrderedDict

from ember import nn
from ember.nn import functional as F
from ember.tensor import Tensor


class _SimpleSegmentationModel(nn.Module):
    """``backbone`` returns ``{"out": ..., "aux": ...}`` features; ``classifier`` (and
    ``aux_classifier``) map them to class scores, upsampled bilinearly to the input size.
    Returns an ``OrderedDict`` with ``"out"`` (and ``"aux"``)."""

    __constants__ = ["aux_classifier"]

    def __init__(
        self, backbone: nn.Module, classifier: nn.Module, aux_classifier: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = classifier
        self.aux_classifier = aux_classifier

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        input_shape = x.shape[-2:]
        features = self.backbone(x)
        result = OrderedDict()
        out = self.classifier(features["out"])
        result["out"] = F.interpolate(out, size=input_shape, mode="bilinear", align_corners=False)
        if self.aux_classifier is not None:
            aux = self.aux_classifier(features["aux"])
            result["aux"] = F.interpolate(
                aux, size=input_shape, mode="bilinear", align_corners=False
            )
        return result


def _voc_weights(name: str, num_params: int):
    """One of torchvision's COCO-trained (VOC labels) segmentation checkpoints."""
    from .._api import Weights, _imagenet_transforms

    return Weights(
        url=f"https://download.pytorch.org/models/{name}.pth",
        transforms=_imagenet_transforms(520, 520),
        meta={"num_params": num_params, "min_size": (1, 1), "categories": None, "num_classes": 21},
    )


def _resolve(enum, weights, backbone_enum, weights_backbone, num_classes, aux_loss):
    """torchvision's argument rules: with ``weights`` the backbone's own weights are not
    loaded, 21 classes and the auxiliary head are required; else 21 classes by default."""
    weights = enum.verify(weights)
    weights_backbone = backbone_enum.verify(weights_backbone)
    if weights is not None:
        weights_backbone = None
        num_classes = _ovewrite_value_param("num_classes", num_classes, 21)
        aux_loss = _ovewrite_value_param("aux_loss", aux_loss, True)
    elif num_classes is None:
        num_classes = 21
    return weights, weights_backbone, num_classes, aux_loss


def _ovewrite_value_param(param: str, actual, expected):
    if actual is not None and actual != expected:
        raise ValueError(
            f"The parameter '{param}' expected value {expected} but got {actual} instead."
        )
    return expected
