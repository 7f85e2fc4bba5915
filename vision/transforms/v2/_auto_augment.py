"""v2's AutoAugment, RandAugment and TrivialAugmentWide: torchvision's ``transforms.v2``
draws, which are not v1's (a sign is ``rand() <= 0.5`` drawn when an op needs one, an
AutoAugment sub-policy's probability is drawn per op, a solarize level is a fraction of the
dtype's maximum), so that one seed gives torchvision's v2 output. As torchvision's, they
refuse samples holding bounding boxes or masks."""

from __future__ import annotations

import numpy as np

from .. import autoaugment as _aa
from .. import functional as _F
from ..autoaugment import _apply_op, _fill, _space
from ..transforms import _rand, _randint
from ._transform import ImageOnly, v2_repr

__all__ = ["AutoAugment", "RandAugment", "TrivialAugmentWide"]


def _magnitude(mags, index: int, signed: bool, op_name: str, num_bins: int, img) -> float:
    if mags is None:
        return 0.0
    if op_name == "Solarize":  # v2: linspace(1, 0) times the dtype's maximum
        level = float(np.linspace(1.0, 0.0, num_bins).astype(np.float32)[index])
        magnitude = level * (1.0 if getattr(img, "is_floating_point", lambda: False)() else 255.0)
    else:
        magnitude = float(mags[index])
    if signed and _rand() <= 0.5:
        magnitude *= -1.0
    return magnitude


class _V2AutoAugment(_aa.AutoAugment):
    def __call__(self, img):
        fill = _fill(img, self.fill)
        _, h, w = _F.get_dimensions(img)
        space = _space(10, (h, w), wide=False)
        for op_name, p, index in self.policies[_randint(0, len(self.policies))]:
            if not _rand() <= p:
                continue
            mags, signed = space.get(op_name, (None, False))  # Invert: no magnitudes
            magnitude = _magnitude(mags, index, signed, op_name, 10, img)
            img = _apply_op(img, op_name, magnitude, self.interpolation, fill)
        return img


class _V2RandAugment(_aa.RandAugment):
    def __call__(self, img):
        fill = _fill(img, self.fill)
        _, h, w = _F.get_dimensions(img)
        space = _space(self.num_magnitude_bins, (h, w), wide=False)
        names = list(space)
        for _ in range(self.num_ops):
            op_name = names[_randint(0, len(names))]
            mags, signed = space[op_name]
            magnitude = _magnitude(
                mags, self.magnitude, signed, op_name, self.num_magnitude_bins, img
            )
            img = _apply_op(img, op_name, magnitude, self.interpolation, fill)
        return img


class _V2TrivialAugmentWide(_aa.TrivialAugmentWide):
    def __call__(self, img):
        fill = _fill(img, self.fill)
        _, h, w = _F.get_dimensions(img)
        space = _space(self.num_magnitude_bins, (h, w), wide=True)
        names = list(space)
        op_name = names[_randint(0, len(names))]
        mags, signed = space[op_name]
        index = _randint(0, self.num_magnitude_bins) if mags is not None else 0
        magnitude = _magnitude(mags, index, signed, op_name, self.num_magnitude_bins, img)
        return _apply_op(img, op_name, magnitude, self.interpolation, fill)


class _ImagesOnly(ImageOnly):
    _kinds = ("image", "boxes", "mask")
    _repr_names: tuple[str, ...] = ()  # torchvision's v2 attributes, in their order

    def _transform(self, inpt, kind, params):
        if kind != "image":
            raise TypeError(
                f"Inputs of type {type(inpt).__name__} are not supported by {type(self).__name__}()"
            )
        return super()._transform(inpt, kind, params)

    def __repr__(self) -> str:
        return v2_repr(self, ("interpolation", "fill") + self._repr_names)


class AutoAugment(_ImagesOnly):
    """AutoAugment with its ImageNet policy, on the images of a sample (torchvision's v2
    draws). Takes the arguments of :class:`~ember.vision.transforms.AutoAugment`."""

    _v1 = _V2AutoAugment
    _repr_names = ("policy",)


class RandAugment(_ImagesOnly):
    """RandAugment on the images of a sample (torchvision's v2 draws). Takes the arguments of
    :class:`~ember.vision.transforms.RandAugment`."""

    _v1 = _V2RandAugment
    _repr_names = ("num_ops", "magnitude", "num_magnitude_bins")


class TrivialAugmentWide(_ImagesOnly):
    """TrivialAugment (wide) on the images of a sample (torchvision's v2 draws). Takes the
    arguments of :class:`~ember.vision.transforms.TrivialAugmentWide`."""

    _v1 = _V2TrivialAugmentWide
    _repr_names = ("num_magnitude_bins",)
