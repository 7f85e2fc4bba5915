"""AugMix (Hendrycks et al., 2020): a convex mix of the image and ``mixture_width`` chains of
random AutoAugment-style ops, with torchvision's space and draws (same seed, same output)."""

from __future__ import annotations

import numpy as np

import ember as _ember
from ember.tensor import Tensor

from . import functional as F
from .autoaugment import _apply_op, _fill
from .functional import InterpolationMode
from .transforms import _rand, _randint, _Transform

__all__ = ["AugMix"]

_PARAMETER_MAX = 10


def _space(num_bins: int, image_size: tuple[int, int], all_ops: bool, v2: bool) -> dict:
    """op name -> (magnitudes or None, signed); float32 bins as torch.linspace gives them."""

    def lin(a, b):
        return np.linspace(a, b, num_bins).astype(np.float32)

    h, w = image_size
    posterize = (4 - np.round(np.arange(num_bins) / ((num_bins - 1) / 4))).astype(np.int64)
    s = {
        "ShearX": (lin(0.0, 0.3), True),
        "ShearY": (lin(0.0, 0.3), True),
        "TranslateX": (lin(0.0, w / 3.0), True),
        "TranslateY": (lin(0.0, h / 3.0), True),
        "Rotate": (lin(0.0, 30.0), True),
        "Posterize": (posterize, False),
        # v2 draws a fraction of the dtype's maximum, v1 a uint8 level
        "Solarize": (lin(1.0, 0.0) if v2 else lin(255.0, 0.0), False),
        "AutoContrast": (None, False),
        "Equalize": (None, False),
    }
    if all_ops:
        for name in ("Brightness", "Color", "Contrast", "Sharpness"):
            s[name] = (lin(0.0, 0.9), True)
    return s


class AugMix(_Transform):
    """AugMix data augmentation: ``mixture_width`` chains of ``chain_depth`` random ops (1 to
    3 when negative), mixed with Dirichlet weights and blended with the original image by a
    Beta weight. Tensors are expected as ``uint8`` ``(..., C, H, W)``; PIL images in mode
    "L" or "RGB". An :class:`~ember.nn.Module`, as torchvision's.

    Args:
        severity: the severity of the base ops, in ``[1, 10]``.
        mixture_width: the number of augmentation chains.
        chain_depth: the depth of each chain; negative draws it from ``[1, 3]``.
        alpha: the parameter of the Dirichlet and Beta distributions.
        all_ops: include brightness, colour, contrast and sharpness.
        interpolation: an :class:`~ember.vision.transforms.InterpolationMode`.
        fill: the value of pixels from outside the image.
    """

    def __init__(
        self,
        severity: int = 3,
        mixture_width: int = 3,
        chain_depth: int = -1,
        alpha: float = 1.0,
        all_ops: bool = True,
        interpolation=InterpolationMode.BILINEAR,
        fill=None,
    ) -> None:
        if not 1 <= severity <= _PARAMETER_MAX:
            raise ValueError(
                f"The severity must be between [1, {_PARAMETER_MAX}]. Got {severity} instead."
            )
        self.severity, self.mixture_width, self.chain_depth = severity, mixture_width, chain_depth
        self.alpha, self.all_ops = alpha, all_ops
        self.interpolation, self.fill = interpolation, fill

    _v2 = False  # torchvision's v2 AugMix draws signs and solarize levels differently

    def __call__(self, orig_img):
        fill = _fill(orig_img, self.fill)
        _, height, width = F.get_dimensions(orig_img)
        img = orig_img if isinstance(orig_img, Tensor) else F.pil_to_tensor(orig_img)
        space = _space(_PARAMETER_MAX, (height, width), self.all_ops, self._v2)
        names = list(space)
        orig_dims = list(img.shape)
        batch = img.view([1] * max(4 - img.ndim, 0) + orig_dims)
        n = int(batch.shape[0])
        batch_dims = [n] + [1] * (batch.ndim - 1)
        # a Beta weight (a 2-way Dirichlet): column 0 for the original, 1 for the chains
        m = _ember._sample_dirichlet(_ember.tensor([self.alpha, self.alpha]).expand(n, -1))
        weights = _ember._sample_dirichlet(
            _ember.tensor([self.alpha] * self.mixture_width).expand(n, -1)
        ) * m[:, 1].view([n, -1])
        mix = m[:, 0].view(batch_dims) * batch
        for i in range(self.mixture_width):
            aug = batch
            depth = self.chain_depth if self.chain_depth > 0 else _randint(1, 4)
            for _ in range(depth):
                op_name = names[_randint(0, len(names))]
                mags, signed = space[op_name]
                magnitude = float(mags[_randint(0, self.severity)]) if mags is not None else 0.0
                if signed and (_rand() <= 0.5 if self._v2 else _randint(0, 2)):
                    magnitude *= -1.0
                if self._v2 and op_name == "Solarize":
                    magnitude *= 1.0 if img.is_floating_point() else 255.0
                aug = _apply_op(aug, op_name, magnitude, self.interpolation, fill)
            mix = mix + weights[:, i].view(batch_dims) * aug
        mix = mix.view(orig_dims).to(img.dtype)
        return mix if isinstance(orig_img, Tensor) else F.to_pil_image(mix)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(severity={self.severity}, mixture_width="
            f"{self.mixture_width}, chain_depth={self.chain_depth}, alpha={self.alpha}, "
            f"all_ops={self.all_ops}, interpolation={self.interpolation}, fill={self.fill})"
        )


class _AugMixV2(AugMix):
    """torchvision's ``transforms.v2.AugMix`` draws: a sign is ``rand() <= 0.5``, a solarize
    level a fraction of the dtype's maximum."""

    _v2 = True


# Pickled by reference and repr'd as ``ember.vision.transforms.autoaugment``'s, as torchvision's
# AugMix says ``torchvision.transforms.autoaugment``.
AugMix.__module__ = "ember.vision.transforms.autoaugment"
