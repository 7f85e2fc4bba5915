"""The quantized-weight entries' common form (torchvision's post-training-quantized and
QAT checkpoints under download.pytorch.org/models/quantized/)."""

from __future__ import annotations

from .._api import Weights, _imagenet_transforms

_RECIPE = "https://github.com/pytorch/vision/tree/main/references/classification"


def qweights(
    name: str,
    num_params: int,
    unquantized,
    backend: str = "fbgemm",
    crop_size: int = 224,
    resize_size: int = 256,
    min_size: tuple[int, int] = (1, 1),
) -> Weights:
    """One quantized checkpoint ``name`` with its float counterpart ``unquantized``."""
    return Weights(
        url=f"https://download.pytorch.org/models/quantized/{name}.pth",
        transforms=_imagenet_transforms(crop_size, resize_size=resize_size),
        meta={
            "num_params": num_params,
            "min_size": min_size,
            "categories": None,
            "backend": backend,
            "recipe": _RECIPE,
            "unquantized": unquantized,
        },
    )
