"""torchvision's weights entries for the Vision Transformers (URLs, presets, metadata).

``IMAGENET1K_V1``: trained from scratch on ImageNet-1k at 224 px. ``IMAGENET1K_SWAG_E2E_V1``:
SWAG weakly supervised pre-training fine-tuned end to end at a larger size (the model is built
for that size: more position embeddings, hence more parameters). ``IMAGENET1K_SWAG_LINEAR_V1``:
the frozen SWAG trunk with a linear classifier learnt at 224 px.
"""

from __future__ import annotations

from ._api import Weights, WeightsEnum, _imagenet_transforms

_URL = "https://download.pytorch.org/models/{}.pth"


def _v1(name: str, num_params: int, resize_size: int = 256) -> Weights:
    return Weights(
        url=_URL.format(name),
        transforms=_imagenet_transforms(224, resize_size=resize_size),
        meta={"num_params": num_params, "min_size": (224, 224)},
    )


def _swag(name: str, size: int, num_params: int) -> Weights:
    from ember.vision.transforms.functional import InterpolationMode

    return Weights(
        url=_URL.format(name),
        transforms=_imagenet_transforms(size, size, InterpolationMode.BICUBIC),
        meta={
            "num_params": num_params,
            "min_size": (size, size),
            "recipe": "https://github.com/facebookresearch/SWAG",
        },
    )


_DOC = """Pretrained weights for :func:`~ember.vision.models.{0}`: {1}; ``DEFAULT`` is {2}.

    Each entry's ``transforms()`` builds its inference preset (resize, centre crop,
    ImageNet normalization), ``meta`` holds details such as ``num_params`` and ``min_size``
    (the image size the model is built for), and ``get_state_dict()`` downloads the checkpoint.
    """
_V1 = "``IMAGENET1K_V1`` (ImageNet-1k, 224 px)"
_SWAG = "``IMAGENET1K_SWAG_E2E_V1`` and ``IMAGENET1K_SWAG_LINEAR_V1`` (SWAG, see the module)"


class ViT_B_16_Weights(WeightsEnum):
    __doc__ = _DOC.format("vit_b_16", f"{_V1}, {_SWAG}", "``IMAGENET1K_V1``")
    IMAGENET1K_V1 = _v1("vit_b_16-c867db91", 86567656)
    IMAGENET1K_SWAG_E2E_V1 = _swag("vit_b_16_swag-9ac1b537", 384, 86859496)
    IMAGENET1K_SWAG_LINEAR_V1 = _swag("vit_b_16_lc_swag-4e70ced5", 224, 86567656)
    DEFAULT = IMAGENET1K_V1


class ViT_B_32_Weights(WeightsEnum):
    __doc__ = _DOC.format("vit_b_32", _V1, "``IMAGENET1K_V1``")
    IMAGENET1K_V1 = _v1("vit_b_32-d86f8d99", 88224232)
    DEFAULT = IMAGENET1K_V1


class ViT_L_16_Weights(WeightsEnum):
    __doc__ = _DOC.format("vit_l_16", f"{_V1}, {_SWAG}", "``IMAGENET1K_V1``")
    IMAGENET1K_V1 = _v1("vit_l_16-852ce7e3", 304326632, resize_size=242)
    IMAGENET1K_SWAG_E2E_V1 = _swag("vit_l_16_swag-4f3808c9", 512, 305174504)
    IMAGENET1K_SWAG_LINEAR_V1 = _swag("vit_l_16_lc_swag-4d563306", 224, 304326632)
    DEFAULT = IMAGENET1K_V1


class ViT_L_32_Weights(WeightsEnum):
    __doc__ = _DOC.format("vit_l_32", _V1, "``IMAGENET1K_V1``")
    IMAGENET1K_V1 = _v1("vit_l_32-c7638314", 306535400)
    DEFAULT = IMAGENET1K_V1


class ViT_H_14_Weights(WeightsEnum):
    __doc__ = _DOC.format("vit_h_14", _SWAG, "``IMAGENET1K_SWAG_E2E_V1``")
    IMAGENET1K_SWAG_E2E_V1 = _swag("vit_h_14_swag-80465313", 518, 633470440)
    IMAGENET1K_SWAG_LINEAR_V1 = _swag("vit_h_14_lc_swag-c1eb923e", 224, 632045800)
    DEFAULT = IMAGENET1K_SWAG_E2E_V1
