"""AutoAugment (ImageNet policy), RandAugment and TrivialAugmentWide, torchvision's spaces.

Each op maps to one functional call (``_apply_op``); the magnitude bins and the ImageNet
policy table are torchvision's (the tests compare them with the recorded ones).
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np

import ember as _ember
from ember.tensor import Tensor

from . import functional as F
from .functional import InterpolationMode
from .transforms import _randint, _Transform

__all__ = ["AutoAugmentPolicy", "AutoAugment", "RandAugment", "TrivialAugmentWide"]


def _apply_op(img, op_name: str, magnitude: float, interpolation, fill):
    if op_name == "ShearX":
        # Shear about the top-left corner, as the AutoAugment reference does.
        return F.affine(
            img,
            0.0,
            [0, 0],
            1.0,
            [math.degrees(math.atan(magnitude)), 0.0],
            interpolation,
            fill,
            center=[0, 0],
        )
    if op_name == "ShearY":
        return F.affine(
            img,
            0.0,
            [0, 0],
            1.0,
            [0.0, math.degrees(math.atan(magnitude))],
            interpolation,
            fill,
            center=[0, 0],
        )
    if op_name == "TranslateX":
        return F.affine(img, 0.0, [int(magnitude), 0], 1.0, [0.0, 0.0], interpolation, fill)
    if op_name == "TranslateY":
        return F.affine(img, 0.0, [0, int(magnitude)], 1.0, [0.0, 0.0], interpolation, fill)
    if op_name == "Rotate":
        return F.rotate(img, magnitude, interpolation, fill=fill)
    adjust = {
        "Brightness": F.adjust_brightness,
        "Color": F.adjust_saturation,
        "Contrast": F.adjust_contrast,
        "Sharpness": F.adjust_sharpness,
    }
    if op_name in adjust:
        return adjust[op_name](img, 1.0 + magnitude)
    if op_name == "Posterize":
        return F.posterize(img, int(magnitude))
    if op_name == "Solarize":
        return F.solarize(img, magnitude)
    plain = {"AutoContrast": F.autocontrast, "Equalize": F.equalize, "Invert": F.invert}
    if op_name in plain:
        return plain[op_name](img)
    if op_name == "Identity":
        return img
    raise ValueError(f"The provided operator {op_name} is not recognized.")


def _fill(img, fill):
    if isinstance(img, Tensor):
        channels = F.get_image_num_channels(img)
        if isinstance(fill, (int, float)):
            return [float(fill)] * channels
        if fill is not None:
            return [float(f) for f in fill]
    return fill


def _posterize_bins(num_bins: int, span: int) -> np.ndarray:
    return (8 - np.round(np.arange(num_bins) / ((num_bins - 1) / span))).astype(np.int64)


def _space(num_bins: int, image_size: tuple[int, int], wide: bool) -> dict:
    """op name -> (magnitudes or None, signed)."""
    lin = np.linspace
    h, w = image_size
    shear = 0.99 if wide else 0.3
    tx, ty = (32.0, 32.0) if wide else (150.0 / 331.0 * w, 150.0 / 331.0 * h)
    rot = 135.0 if wide else 30.0
    enh = 0.99 if wide else 0.9
    return {
        "Identity": (None, False),
        "ShearX": (lin(0.0, shear, num_bins), True),
        "ShearY": (lin(0.0, shear, num_bins), True),
        "TranslateX": (lin(0.0, tx, num_bins), True),
        "TranslateY": (lin(0.0, ty, num_bins), True),
        "Rotate": (lin(0.0, rot, num_bins), True),
        "Brightness": (lin(0.0, enh, num_bins), True),
        "Color": (lin(0.0, enh, num_bins), True),
        "Contrast": (lin(0.0, enh, num_bins), True),
        "Sharpness": (lin(0.0, enh, num_bins), True),
        "Posterize": (_posterize_bins(num_bins, 6 if wide else 4), False),
        "Solarize": (lin(255.0, 0.0, num_bins), False),
        "AutoContrast": (None, False),
        "Equalize": (None, False),
    }


class AutoAugmentPolicy(Enum):
    """The learned augmentation policies of AutoAugment, named after their dataset.

    Only ``IMAGENET`` is implemented by :class:`~ember.vision.transforms.AutoAugment` for
    now; ``CIFAR10`` and ``SVHN`` are listed for compatibility.
    """

    IMAGENET = "imagenet"
    CIFAR10 = "cifar10"
    SVHN = "svhn"


_IMAGENET_POLICY = [
    (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
    (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, None), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, None)),
    (("Posterize", 0.8, 5), ("Equalize", 1.0, None)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, None), ("Posterize", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, None)),
    (("Equalize", 0.0, None), ("Equalize", 0.8, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, None)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, None)),
    (("Color", 0.4, 0), ("Equalize", 0.6, None)),
    (("Equalize", 0.4, None), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, None)),
    (("Invert", 0.6, None), ("Equalize", 1.0, None)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, None), ("Equalize", 0.6, None)),
]


class AutoAugment(_Transform):
    """AutoAugment (Cubuk et al., 2019) with the ImageNet policy; uint8 images. An
    :class:`~ember.nn.Module`, as torchvision's (no state: its ``state_dict()`` is empty)."""

    def __init__(
        self,
        policy: AutoAugmentPolicy = AutoAugmentPolicy.IMAGENET,
        interpolation=InterpolationMode.NEAREST,
        fill=None,
    ) -> None:
        if policy != AutoAugmentPolicy.IMAGENET:
            raise NotImplementedError(
                f"ember.vision's AutoAugment has the IMAGENET policy; {policy} is not available yet"
            )
        self.policy, self.interpolation, self.fill = policy, interpolation, fill
        self.policies = list(_IMAGENET_POLICY)

    @staticmethod
    def get_params(transform_num: int) -> tuple[int, list[float], list[int]]:
        # torchvision's draws: randint(transform_num, (1,)), rand((2,)), randint(2, (2,))
        return (
            _randint(0, transform_num),
            _ember.rand(2).tolist(),
            _ember.randint(0, 2, (2,)).tolist(),
        )

    def __call__(self, img):
        fill = _fill(img, self.fill)
        _, h, w = F.get_dimensions(img)
        policy_id, probs, signs = self.get_params(len(self.policies))
        space = _space(10, (h, w), wide=False)
        for i, (op_name, p, magnitude_id) in enumerate(self.policies[policy_id]):
            if probs[i] <= p:
                mags, signed = space.get(op_name, (None, False))  # Invert: not in the space
                magnitude = float(mags[magnitude_id]) if magnitude_id is not None else 0.0
                if signed and signs[i] == 0:
                    magnitude *= -1.0
                img = _apply_op(img, op_name, magnitude, self.interpolation, fill)
        return img

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(policy={self.policy}, fill={self.fill})"


class RandAugment(_Transform):
    """RandAugment (Cubuk et al., 2020): ``num_ops`` random ops at a fixed ``magnitude``; an
    :class:`~ember.nn.Module`, as torchvision's."""

    def __init__(
        self,
        num_ops: int = 2,
        magnitude: int = 9,
        num_magnitude_bins: int = 31,
        interpolation=InterpolationMode.NEAREST,
        fill=None,
    ) -> None:
        if not 0 <= magnitude < num_magnitude_bins:
            raise ValueError(f"magnitude should be in [0, {num_magnitude_bins}), got {magnitude}")
        self.num_ops, self.magnitude = num_ops, magnitude
        self.num_magnitude_bins, self.interpolation, self.fill = (
            num_magnitude_bins,
            interpolation,
            fill,
        )

    def __call__(self, img):
        fill = _fill(img, self.fill)
        _, h, w = F.get_dimensions(img)
        space = _space(self.num_magnitude_bins, (h, w), wide=False)
        names = list(space)
        for _ in range(self.num_ops):
            op_name = names[_randint(0, len(names))]
            mags, signed = space[op_name]
            magnitude = float(mags[self.magnitude]) if mags is not None else 0.0
            if signed and _randint(0, 2):
                magnitude *= -1.0
            img = _apply_op(img, op_name, magnitude, self.interpolation, fill)
        return img

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_ops={self.num_ops}, magnitude={self.magnitude}, "
            f"num_magnitude_bins={self.num_magnitude_bins}, interpolation={self.interpolation}, "
            f"fill={self.fill})"
        )


class TrivialAugmentWide(_Transform):
    """TrivialAugment (Müller & Hutter, 2021): one random op at a random magnitude; an
    :class:`~ember.nn.Module`, as torchvision's."""

    def __init__(
        self, num_magnitude_bins: int = 31, interpolation=InterpolationMode.NEAREST, fill=None
    ) -> None:
        self.num_magnitude_bins, self.interpolation, self.fill = (
            num_magnitude_bins,
            interpolation,
            fill,
        )

    def __call__(self, img):
        fill = _fill(img, self.fill)
        _, h, w = F.get_dimensions(img)
        space = _space(self.num_magnitude_bins, (h, w), wide=True)
        names = list(space)
        op_name = names[_randint(0, len(names))]
        mags, signed = space[op_name]
        magnitude = float(mags[_randint(0, len(mags))]) if mags is not None else 0.0
        if signed and _randint(0, 2):
            magnitude *= -1.0
        return _apply_op(img, op_name, magnitude, self.interpolation, fill)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(num_magnitude_bins={self.num_magnitude_bins}, "
            f"interpolation={self.interpolation}, fill={self.fill})"
        )


# AugMix lives in _augmix.py and is importable from here, as torchvision's
from ._augmix import AugMix  # noqa: E402,F401
