"""The pretrained-weight enums of the ResNets (``ResNet18_Weights`` ... ``ResNet152_Weights``,
the ResNeXts and the wide ResNets),
re-exported by ``resnet.py``, where they keep their ``__module__`` (torchvision's layout)."""

from __future__ import annotations

from ._api import Weights, WeightsEnum, _imagenet_transforms

_COMMON_META = {
    "min_size": (1, 1),
    "categories": None,
    "recipe": "https://github.com/pytorch/vision/tree/main/references/classification",
}


class ResNet18_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.resnet18`.

    ``IMAGENET1K_V1`` is torchvision's ImageNet-1k checkpoint; ``DEFAULT`` aliases it.

    Each entry's ``transforms()`` builds its inference preset (resize, centre crop,
    ImageNet normalization), ``meta`` holds details such as ``num_params``, and
    ``get_state_dict()`` downloads the checkpoint.
    """

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/resnet18-f37072fd.pth",
        transforms=_imagenet_transforms(224),
        meta={**_COMMON_META, "num_params": 11689512},
    )
    DEFAULT = IMAGENET1K_V1


class ResNet34_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.resnet34`.

    ``IMAGENET1K_V1`` is torchvision's ImageNet-1k checkpoint; ``DEFAULT`` aliases it.

    Each entry's ``transforms()`` builds its inference preset (resize, centre crop,
    ImageNet normalization), ``meta`` holds details such as ``num_params``, and
    ``get_state_dict()`` downloads the checkpoint.
    """

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/resnet34-b627a593.pth",
        transforms=_imagenet_transforms(224),
        meta={**_COMMON_META, "num_params": 21797672},
    )
    DEFAULT = IMAGENET1K_V1


class ResNet50_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.resnet50`.

    ``IMAGENET1K_V1`` and the newer ``IMAGENET1K_V2`` are torchvision's ImageNet-1k
    checkpoints; ``DEFAULT`` aliases ``IMAGENET1K_V2``.

    Each entry's ``transforms()`` builds its inference preset (resize, centre crop,
    ImageNet normalization), ``meta`` holds details such as ``num_params``, and
    ``get_state_dict()`` downloads the checkpoint.
    """

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
        transforms=_imagenet_transforms(224),
        meta={**_COMMON_META, "num_params": 25557032},
    )
    IMAGENET1K_V2 = Weights(
        url="https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        transforms=_imagenet_transforms(224, resize_size=232),
        meta={**_COMMON_META, "num_params": 25557032},
    )
    DEFAULT = IMAGENET1K_V2


class ResNet101_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.resnet101` (as ``ResNet50_Weights``)."""

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/resnet101-63fe2227.pth",
        transforms=_imagenet_transforms(224),
        meta={**_COMMON_META, "num_params": 44549160},
    )
    IMAGENET1K_V2 = Weights(
        url="https://download.pytorch.org/models/resnet101-cd907fc2.pth",
        transforms=_imagenet_transforms(224, resize_size=232),
        meta={**_COMMON_META, "num_params": 44549160},
    )
    DEFAULT = IMAGENET1K_V2


class ResNet152_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.resnet152` (as ``ResNet50_Weights``)."""

    IMAGENET1K_V1 = Weights(
        url="https://download.pytorch.org/models/resnet152-394f9c45.pth",
        transforms=_imagenet_transforms(224),
        meta={**_COMMON_META, "num_params": 60192808},
    )
    IMAGENET1K_V2 = Weights(
        url="https://download.pytorch.org/models/resnet152-f82ba261.pth",
        transforms=_imagenet_transforms(224, resize_size=232),
        meta={**_COMMON_META, "num_params": 60192808},
    )
    DEFAULT = IMAGENET1K_V2


def _w(name: str, num_params: int, resize_size: int = 256) -> Weights:
    """One torchvision checkpoint ``name`` (file name under download.pytorch.org/models/)."""
    return Weights(
        url=f"https://download.pytorch.org/models/{name}.pth",
        transforms=_imagenet_transforms(224, resize_size=resize_size),
        meta={**_COMMON_META, "num_params": num_params},
    )


class ResNeXt50_32X4D_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.resnext50_32x4d` (as
    ``ResNet50_Weights``)."""

    IMAGENET1K_V1 = _w("resnext50_32x4d-7cdf4587", 25028904)
    IMAGENET1K_V2 = _w("resnext50_32x4d-1a0047aa", 25028904, 232)
    DEFAULT = IMAGENET1K_V2


class ResNeXt101_32X8D_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.resnext101_32x8d` (as
    ``ResNet50_Weights``)."""

    IMAGENET1K_V1 = _w("resnext101_32x8d-8ba56ff5", 88791336)
    IMAGENET1K_V2 = _w("resnext101_32x8d-110c445d", 88791336, 232)
    DEFAULT = IMAGENET1K_V2


class ResNeXt101_64X4D_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.resnext101_64x4d` (torchvision's
    one ImageNet-1k checkpoint, trained with its newer recipe)."""

    IMAGENET1K_V1 = _w("resnext101_64x4d-173b62eb", 83455272, 232)
    DEFAULT = IMAGENET1K_V1


class Wide_ResNet50_2_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.wide_resnet50_2` (as
    ``ResNet50_Weights``)."""

    IMAGENET1K_V1 = _w("wide_resnet50_2-95faca4d", 68883240)
    IMAGENET1K_V2 = _w("wide_resnet50_2-9ba9bcbe", 68883240, 232)
    DEFAULT = IMAGENET1K_V2


class Wide_ResNet101_2_Weights(WeightsEnum):
    """Pretrained weights for :func:`~ember.vision.models.wide_resnet101_2` (as
    ``ResNet50_Weights``)."""

    IMAGENET1K_V1 = _w("wide_resnet101_2-32ee1156", 126886696)
    IMAGENET1K_V2 = _w("wide_resnet101_2-d733dc28", 126886696, 232)
    DEFAULT = IMAGENET1K_V2


for _cls in (
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
):
    _cls.__module__ = "ember.vision.models.resnet"
del _cls
