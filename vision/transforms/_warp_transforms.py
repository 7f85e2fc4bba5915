"""The warping random transforms: ``RandomPerspective`` and ``ElasticTransform``
(torchvision's draws, in its order; the warps themselves are ``functional.perspective`` and
``functional.elastic_transform``)."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

from ember.tensor import Tensor

from . import functional as F
from .functional import InterpolationMode
from .transforms import _rand, _randint, _Transform

__all__ = ["RandomPerspective", "ElasticTransform"]


class RandomPerspective(_Transform):
    """Apply a random perspective warp with probability ``p``.

    Each corner moves inwards by a random amount of up to ``distortion_scale`` times half the
    image's width and height (torchvision's draws, in its order).

    Args:
        distortion_scale: how far the corners may move, in ``[0, 1]``.
        p: the probability of warping.
        interpolation: an :class:`~ember.vision.transforms.InterpolationMode`, bilinear by
            default.
        fill: the value of pixels from outside the image.
    """

    def __init__(
        self,
        distortion_scale: float = 0.5,
        p: float = 0.5,
        interpolation=InterpolationMode.BILINEAR,
        fill=0,
    ) -> None:
        if not isinstance(fill, (numbers.Number, tuple, list)):
            raise TypeError("Fill should be either a sequence or a number.")
        self.distortion_scale, self.p = distortion_scale, p
        self.interpolation, self.fill = interpolation, fill

    @staticmethod
    def get_params(width: int, height: int, distortion_scale: float):
        """``(startpoints, endpoints)``: the image's corners and where they move."""
        dx, dy = int(distortion_scale * (width // 2)), int(distortion_scale * (height // 2))
        top_left = [_randint(0, dx + 1), _randint(0, dy + 1)]
        top_right = [_randint(width - dx - 1, width), _randint(0, dy + 1)]
        bottom_right = [_randint(width - dx - 1, width), _randint(height - dy - 1, height)]
        bottom_left = [_randint(0, dx + 1), _randint(height - dy - 1, height)]
        start = [[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]]
        return start, [top_left, top_right, bottom_right, bottom_left]

    def __call__(self, img):
        fill = self.fill
        channels, height, width = F.get_dimensions(img)
        if isinstance(img, Tensor):
            fill = [float(f) for f in (fill if isinstance(fill, (list, tuple)) else [fill])]
            fill = fill * channels if len(fill) == 1 else fill
        if _rand() < self.p:
            start, end = self.get_params(width, height, self.distortion_scale)
            return F.perspective(img, start, end, self.interpolation, fill)
        return img

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


def _float_pair(value, name: str) -> list[float]:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value), float(value)]
    if not isinstance(value, Sequence) or len(value) not in (1, 2):
        raise ValueError(f"If {name} is a sequence its length should be 2. Got {value!r}")
    return [float(value[0]), float(value[-1])]


class ElasticTransform(_Transform):
    """Morph an image by random displacement fields: uniform noise in [-1, 1] per pixel,
    smoothed by a Gaussian of ``sigma`` and scaled by ``alpha`` (torchvision's draws).

    Args:
        alpha: the displacement magnitude, in pixels (one value, or ``(x, y)``).
        sigma: the smoothing of the fields (one value, or ``(x, y)``).
        interpolation: an :class:`~ember.vision.transforms.InterpolationMode`, bilinear by
            default.
        fill: the value of pixels from outside the image.
    """

    def __init__(self, alpha=50.0, sigma=5.0, interpolation=InterpolationMode.BILINEAR, fill=0):
        self.alpha, self.sigma = _float_pair(alpha, "alpha"), _float_pair(sigma, "sigma")
        if not isinstance(fill, (int, float, list, tuple)):
            raise TypeError(
                f"fill should be int or float or a list or tuple of them. Got {type(fill)}"
            )
        self.interpolation = interpolation
        self.fill = [float(f) for f in fill] if isinstance(fill, (list, tuple)) else [float(fill)]

    @staticmethod
    def get_params(alpha: list[float], sigma: list[float], size: list[int]) -> Tensor:
        """A ``(1, H, W, 2)`` displacement field for ``size`` ``[H, W]``."""
        import ember

        fields = []
        for i, extent in ((0, size[1]), (1, size[0])):  # x then y, as torchvision draws them
            d = ember.rand([1, 1] + list(size)) * 2 - 1
            if sigma[i] > 0.0:
                k = int(8 * sigma[i] + 1)
                k += 1 - k % 2  # odd
                d = F.gaussian_blur(d, [k, k], sigma)
            fields.append(d * alpha[i] / extent)
        return ember.concat(fields, 1).permute([0, 2, 3, 1])

    def __call__(self, img):
        _, height, width = F.get_dimensions(img)
        displacement = self.get_params(self.alpha, self.sigma, [height, width])
        return F.elastic_transform(img, displacement, self.interpolation, self.fill)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(alpha={self.alpha}, sigma={self.sigma}, "
            f"interpolation={self.interpolation}, fill={self.fill})"
        )


# Pickled by reference and repr'd as ``ember.vision.transforms.transforms``'s, as torchvision's
# classes say ``torchvision.transforms.transforms``.
for _cls in (RandomPerspective, ElasticTransform):
    _cls.__module__ = "ember.vision.transforms.transforms"
del _cls
