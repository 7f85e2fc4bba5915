"""More of torchvision's v2 transforms: ``Identity``, ``RGB``, ``RandomChannelPermutation``,
``GaussianNoise``, ``JPEG``, ``AugMix``, ``LinearTransformation``, the size-jittering
resizes (``RandomResize``, ``RandomShortestSize``, ``ScaleJitter``, which move boxes and
masks with the image) and ``UniformTemporalSubsample`` for videos. Same draws as
torchvision's under the same seed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import transforms as _v1
from .._augmix import _AugMixV2
from .._linear_transform import LinearTransformation as _LinearTransformation
from ..functional import InterpolationMode
from . import functional as F2
from ._transform import ImageOnly, Transform, v2_repr

__all__ = [
    "Identity",
    "RGB",
    "RandomChannelPermutation",
    "GaussianNoise",
    "JPEG",
    "AugMix",
    "LinearTransformation",
    "RandomResize",
    "RandomShortestSize",
    "ScaleJitter",
    "UniformTemporalSubsample",
]


class Identity(Transform):
    """Return the sample unchanged."""

    def __call__(self, *inputs):
        return inputs if len(inputs) > 1 else inputs[0]


class RGB(Transform):
    """Turn 1-channel images into 3-channel RGB ones; RGB images pass through."""

    _kinds = ("image",)

    def _transform(self, inpt, kind, params):
        return F2.grayscale_to_rgb(inpt)


class RandomChannelPermutation(Transform):
    """Shuffle the channels of the images (one permutation per sample)."""

    _kinds = ("image",)

    def _get_params(self, image) -> dict[str, Any]:
        return {"permutation": _v1._randperm(F2.get_dimensions(image)[0])}

    def _transform(self, inpt, kind, params):
        return F2.permute_channels(inpt, params["permutation"])


class GaussianNoise(Transform):
    """Add Gaussian noise to float (in [0, 1]) or ``uint8`` images.

    Args:
        mean: the noise's mean, in [0, 1] units.
        sigma: the noise's standard deviation, in [0, 1] units.
        clip: clamp the result to the valid range.
    """

    _kinds = ("image",)

    def __init__(self, mean: float = 0.0, sigma: float = 0.1, clip: bool = True) -> None:
        self.mean, self.sigma, self.clip = mean, sigma, clip

    def _transform(self, inpt, kind, params):
        return F2.gaussian_noise(inpt, mean=self.mean, sigma=self.sigma, clip=self.clip)


class JPEG(Transform):
    """JPEG-compress the images at a quality drawn from ``quality`` (one int, or a
    ``(min, max)`` range), through Pillow's encoder.

    Args:
        quality: from 1 to 100; lower compresses more.
    """

    _kinds = ("image",)

    def __init__(self, quality: int | Sequence[int]) -> None:
        if isinstance(quality, int):
            if isinstance(quality, bool):
                raise TypeError("quality can't be bool")
            quality = [quality, quality]
        elif not isinstance(quality, Sequence) or len(quality) != 2:
            raise TypeError(f"quality should be an int or a sequence of 2 ints, got {quality}")
        lo, hi = quality
        if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi <= 100):
            raise ValueError(f"quality must be an integer from 1 to 100, got quality ={quality}")
        self.quality = list(quality)

    def _get_params(self, image) -> dict[str, Any]:
        return {"quality": _v1._randint(self.quality[0], self.quality[1] + 1)}

    def _transform(self, inpt, kind, params):
        return F2.jpeg(inpt, params["quality"])


class AugMix(ImageOnly):
    """AugMix on the images of a sample; takes the arguments of
    :class:`~ember.vision.transforms.AugMix`. As torchvision's, it refuses samples holding
    bounding boxes or masks (the ops would have to move them)."""

    _v1 = _AugMixV2
    _kinds = ("image", "boxes", "mask")

    def _transform(self, inpt, kind, params):
        if kind != "image":
            raise TypeError(
                f"Inputs of type {type(inpt).__name__} are not supported by {type(self).__name__}()"
            )
        return super()._transform(inpt, kind, params)

    def __repr__(self) -> str:
        names = ("severity", "mixture_width", "chain_depth", "alpha", "all_ops")
        return v2_repr(self, ("interpolation", "fill") + names)


class LinearTransformation(ImageOnly):
    """Whiten the images of a sample; takes the arguments of
    :class:`~ember.vision.transforms.LinearTransformation`."""

    _v1 = _LinearTransformation


class _Resize(Transform):
    def __init__(self, interpolation=InterpolationMode.BILINEAR, antialias=True) -> None:
        self.interpolation, self.antialias = interpolation, antialias

    def _transform(self, inpt, kind, params):
        return F2.resize(
            inpt, params["size"], interpolation=self.interpolation, antialias=self.antialias
        )


class RandomResize(_Resize):
    """Resize the sample's shorter side to a size drawn from ``[min_size, max_size)``."""

    def __init__(
        self,
        min_size: int,
        max_size: int,
        interpolation=InterpolationMode.BILINEAR,
        antialias=True,
    ) -> None:
        super().__init__(interpolation, antialias)
        self.min_size, self.max_size = min_size, max_size

    def _get_params(self, image) -> dict[str, Any]:
        return {"size": [_v1._randint(self.min_size, self.max_size)]}


class RandomShortestSize(_Resize):
    """Resize so that the shorter side is one of ``min_size`` (drawn), the longer side at
    most ``max_size``; the aspect ratio is kept."""

    def __init__(
        self,
        min_size: int | Sequence[int],
        max_size: int | None = None,
        interpolation=InterpolationMode.BILINEAR,
        antialias=True,
    ) -> None:
        super().__init__(interpolation, antialias)
        self.min_size = [min_size] if isinstance(min_size, int) else list(min_size)
        self.max_size = max_size

    def _get_params(self, image) -> dict[str, Any]:
        h, w = F2.get_size(image)
        min_size = self.min_size[_v1._randint(0, len(self.min_size))]
        r = min_size / min(h, w)
        if self.max_size is not None:
            r = min(r, self.max_size / max(h, w))
        return {"size": (int(h * r), int(w * r))}


class ScaleJitter(_Resize):
    """Resize to ``target_size`` ``(H, W)`` scaled by a factor drawn from ``scale_range``,
    keeping the aspect ratio (large-scale jitter, Ghiasi et al. 2021)."""

    def __init__(
        self,
        target_size: tuple[int, int],
        scale_range: tuple[float, float] = (0.1, 2.0),
        interpolation=InterpolationMode.BILINEAR,
        antialias=True,
    ) -> None:
        super().__init__(interpolation, antialias)
        self.target_size, self.scale_range = target_size, scale_range

    def _get_params(self, image) -> dict[str, Any]:
        h, w = F2.get_size(image)
        lo, hi = self.scale_range
        # float32 arithmetic, as torchvision's (its scale is a one-element float32 tensor)
        f32 = np.float32
        scale = f32(lo) + f32(_v1._rand()) * f32(hi - lo)
        r = f32(min(self.target_size[1] / h, self.target_size[0] / w)) * scale
        return {"size": (int(f32(h) * r), int(f32(w) * r))}


class UniformTemporalSubsample(Transform):
    """Keep ``num_samples`` frames spread evenly over each video ``(..., T, C, H, W)``."""

    _kinds = ("image",)

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples

    def _transform(self, inpt, kind, params):
        return F2.uniform_temporal_subsample(inpt, self.num_samples)
