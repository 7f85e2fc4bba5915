"""``ember.vision.transforms.v2``: torchvision's v2 transforms for images, bounding boxes and
masks (``ember.vision.tv_tensors``).

A transform takes one input or a nest of tuples / lists / dicts; the geometric ones (flips,
``Resize``, ``CenterCrop``, ``RandomCrop``, ``RandomResizedCrop``, ``Pad``, ``RandomRotation``,
``RandomAffine``, ``RandomZoomOut``, ``RandomIoUCrop``) draw their parameters once and move
boxes and masks with the image; the colour and other image-only transforms leave boxes and
masks alone. ``RandomPerspective`` and ``ElasticTransform`` warp boxes and masks too.
"""

from __future__ import annotations

import numpy as np

from ember.tensor import Tensor

from ... import tv_tensors
from .. import autoaugment as _aa
from .. import functional as _F
from .. import transforms as _v1
from . import functional
from ._augment import CutMix, MixUp
from ._detection import (
    RandomIoUCrop,
    RandomPhotometricDistort,
    RandomZoomOut,
    SanitizeBoundingBoxes,
)
from ._extra import *  # noqa: F403
from ._extra import __all__ as _extra_all
from ._geometry import *  # noqa: F403
from ._geometry import __all__ as _geometry_all
from ._keypoints import ClampKeyPoints, SanitizeKeyPoints, get_keypoints
from ._transform import ImageOnly, Transform
from ._utils import (
    check_type,
    get_bounding_boxes,
    has_all,
    has_any,
    query_chw,
    query_size,
)

_IMAGE_ONLY = [
    "ColorJitter",
    "Normalize",
    "Grayscale",
    "RandomGrayscale",
    "GaussianBlur",
    "RandomErasing",
    "RandomInvert",
    "RandomPosterize",
    "RandomSolarize",
    "RandomAdjustSharpness",
    "RandomAutocontrast",
    "RandomEqualize",
    "ConvertImageDtype",
    "ToPILImage",
    "PILToTensor",
    "ToTensor",
    "FiveCrop",
    "TenCrop",
]
for _name in _IMAGE_ONLY:
    globals()[_name] = type(
        _name, (ImageOnly,), {"_v1": getattr(_v1, _name), "__doc__": getattr(_v1, _name).__doc__}
    )


class _RandomPosterizeV2(_v1.RandomPosterize):
    # v2's posterize takes float images too (v1's refuses them)
    def _apply(self, img):
        return functional.posterize(img, self.bits)


RandomPosterize._v1 = _RandomPosterizeV2  # noqa: F405 (made in the loop above)


# torchvision's v2 draws (not v1's): _auto_augment.py
from ._auto_augment import AutoAugment, RandAugment, TrivialAugmentWide  # noqa: E402

AutoAugmentPolicy = _aa.AutoAugmentPolicy
InterpolationMode = _F.InterpolationMode
from ._lambda import Lambda  # noqa: E402 (v2's: per leaf, not v1's whole-sample call)


class Compose(Transform):
    """Apply ``transforms`` in turn to the whole sample (one input or several)."""

    def __init__(self, transforms) -> None:
        self.transforms = list(transforms)

    def forward(self, *inputs):
        unpack = len(inputs) > 1
        for t in self.transforms:
            out = t(*inputs)
            inputs = out if unpack else (out,)
        return out if self.transforms else (inputs if unpack else inputs[0])

    def __repr__(self) -> str:
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{self.__class__.__name__}({body}\n)"


class RandomApply(Compose):
    """Apply a list of transforms in turn with probability ``p``, else return the input.

    Args:
        transforms: the transforms to apply, as in :class:`~ember.vision.transforms.v2.Compose`.
        p: the probability of applying them.
    """

    def __init__(self, transforms, p: float = 0.5) -> None:
        super().__init__(transforms)
        self.p = p

    def forward(self, *inputs):
        if _v1._rand() >= self.p:
            return inputs if len(inputs) > 1 else inputs[0]
        return super().forward(*inputs)


class RandomChoice(Compose):
    """Apply one transform picked at random from a list.

    Args:
        transforms: the candidate transforms.
        p: optional weights, one per transform (normalized to sum to one); uniform when
            ``None``.
    """

    def __init__(self, transforms, p=None) -> None:
        super().__init__(transforms)
        self.p = p

    def forward(self, *inputs):
        w = None if self.p is None else [x / sum(self.p) for x in self.p]
        return self.transforms[int(_v1._rng().choice(len(self.transforms), p=w))](*inputs)


class RandomOrder(Compose):
    """Apply every transform of a list, in an order shuffled anew on each call.

    Args:
        transforms: the transforms to apply.
    """

    def forward(self, *inputs):
        unpack = len(inputs) > 1
        out = inputs if unpack else inputs[0]
        for i in _v1._rng().permutation(len(self.transforms)):
            out = self.transforms[int(i)](*inputs)
            inputs = out if unpack else (out,)
        return out


class ToImage(Transform):
    """PIL image, ndarray ``(H, W, C)`` or tensor -> ``tv_tensors.Image``, dtype kept."""

    _kinds = ("image",)

    def __call__(self, *inputs):
        if len(inputs) == 1 and isinstance(inputs[0], np.ndarray):
            arr = inputs[0][:, :, None] if inputs[0].ndim == 2 else inputs[0]
            return tv_tensors.Image(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        return super().__call__(*inputs)

    def _transform(self, inpt, kind, params):
        if isinstance(inpt, tv_tensors.Image):
            return inpt
        if isinstance(inpt, Tensor):
            return tv_tensors.Image(inpt)
        return tv_tensors.Image(_F.pil_to_tensor(inpt))


class ToDtype(Transform):
    """Cast images to ``dtype`` (``scale=True`` rescales 255 <-> 1.0); a dict maps tv_tensor
    types (``tv_tensors.Image``, ``tv_tensors.Mask``, ``"others"``) to dtypes."""

    def __init__(self, dtype, scale: bool = False) -> None:
        self.dtype, self.scale = dtype, scale

    def _transform(self, inpt, kind, params):
        if isinstance(self.dtype, dict):
            key = type(inpt) if type(inpt) in self.dtype else "others"
            dtype = self.dtype.get(key)
            if dtype is None:
                return inpt
        elif kind != "image":
            return inpt
        else:
            dtype = self.dtype
        if not isinstance(inpt, Tensor):
            raise TypeError(
                f"ToDtype expects tensors, got {type(inpt).__name__}; use ToImage() first"
            )
        if self.scale and kind == "image":
            out = _F.convert_image_dtype(inpt, dtype)
        else:
            out = Tensor._wrap(inpt.detach()._data).to(dtype)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else out


class ToPureTensor(Transform):
    """Turn the ``tv_tensors`` of a sample (images, bounding boxes, masks) into plain tensors.

    The data is shared, not copied; the other items pass through unchanged.
    """

    _kinds = ("image", "boxes", "mask", "keypoints")

    def _transform(self, inpt, kind, params):
        return Tensor._wrap(inpt._data) if isinstance(inpt, tv_tensors.TVTensor) else inpt


class ConvertBoundingBoxFormat(Transform):
    """Convert the ``BoundingBoxes`` of a sample to ``format`` ("XYXY", "XYWH", "CXCYWH")."""

    _kinds = ("boxes",)

    def __init__(self, format) -> None:
        if isinstance(format, str):
            format = tv_tensors.BoundingBoxFormat[format.upper()]
        self.format = format

    def _transform(self, inpt, kind, params):
        return functional.convert_bounding_box_format(inpt, new_format=self.format)


class ClampBoundingBoxes(Transform):
    """Clamp the ``BoundingBoxes`` of a sample to their ``canvas_size``.

    Args:
        clamping_mode: ``"auto"`` (the default) uses each box set's own ``clamping_mode``;
            ``"soft"``, ``"hard"`` or None override it.
    """

    _kinds = ("boxes",)

    def __init__(self, clamping_mode: str | None = "auto") -> None:
        self.clamping_mode = clamping_mode

    def _transform(self, inpt, kind, params):
        return functional.clamp_bounding_boxes(inpt, clamping_mode=self.clamping_mode)


class SetClampingMode(Transform):
    """Set the ``clamping_mode`` of the ``BoundingBoxes`` of a sample, used by the transforms
    that follow.

    Args:
        clamping_mode: ``"soft"``, ``"hard"`` or None (no clamping).
    """

    _kinds = ("boxes",)

    def __init__(self, clamping_mode: str | None) -> None:
        if clamping_mode not in (None, "soft", "hard"):
            raise ValueError(f"clamping_mode must be soft, hard or None, got {clamping_mode}")
        self.clamping_mode = clamping_mode

    def _transform(self, inpt, kind, params):
        out = inpt.clone()
        out.clamping_mode = self.clamping_mode
        return out


__all__ = (
    list(_geometry_all)
    + list(_extra_all)
    + _IMAGE_ONLY
    + [
        "AutoAugment",
        "RandAugment",
        "TrivialAugmentWide",
        "AutoAugmentPolicy",
        "InterpolationMode",
        "Lambda",
        "Compose",
        "RandomApply",
        "RandomChoice",
        "RandomOrder",
        "ToImage",
        "ToDtype",
        "ToPureTensor",
        "ConvertBoundingBoxFormat",
        "ClampBoundingBoxes",
        "SetClampingMode",
        "CutMix",
        "MixUp",
        "RandomPhotometricDistort",
        "RandomZoomOut",
        "RandomIoUCrop",
        "SanitizeBoundingBoxes",
        "Transform",
        "functional",
        "check_type",
        "get_bounding_boxes",
        "has_all",
        "has_any",
        "query_chw",
        "query_size",
        "ClampKeyPoints",
        "SanitizeKeyPoints",
        "get_keypoints",
    ]
)
