"""v2's geometric transforms: one parameter draw per sample, applied to the image, its
bounding boxes and masks alike."""

from __future__ import annotations

from typing import Any

from .. import transforms as _v1
from .._functional_pil import is_pil
from ..functional import InterpolationMode, _padding4, _pair
from . import functional as F2
from ._transform import Transform

__all__ = [
    "RandomHorizontalFlip",
    "RandomVerticalFlip",
    "Resize",
    "CenterCrop",
    "RandomCrop",
    "RandomResizedCrop",
    "Pad",
    "RandomRotation",
    "RandomAffine",
    "RandomPerspective",
    "ElasticTransform",
]


class RandomHorizontalFlip(Transform):
    """Flip a sample left to right with probability ``p``.

    One draw decides for the whole sample: the image, its bounding boxes and its masks are
    flipped together or not at all.

    Args:
        p: the probability of flipping.
    """

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def _get_params(self, image):
        return {"apply": _v1._rand() < self.p}

    def _needs_transform(self, params):
        return params["apply"]

    def _transform(self, inpt, kind, params):
        return F2.horizontal_flip(inpt)


class RandomVerticalFlip(RandomHorizontalFlip):
    """Flip a sample upside down with probability ``p``.

    One draw decides for the whole sample: the image, its bounding boxes and its masks are
    flipped together or not at all.

    Args:
        p: the probability of flipping.
    """

    def _transform(self, inpt, kind, params):
        return F2.vertical_flip(inpt)


class Resize(Transform):
    """Resize the images of a sample to ``size``.

    Bounding boxes and masks in the sample are transformed along with the image.

    Args:
        size: ``(h, w)`` for an exact output size, or an int for the length of the shorter
            edge, the longer one following the aspect ratio.
        interpolation: an :class:`~ember.vision.transforms.v2.InterpolationMode` for the
            images, bilinear by default.
        max_size: with an int ``size``, the longest the longer edge may become.
        antialias: low-pass filter tensor images before downsampling.
    """

    def __init__(
        self,
        size,
        interpolation=InterpolationMode.BILINEAR,
        max_size=None,
        antialias: bool | None = True,
    ) -> None:
        _v1.Resize(size, interpolation, max_size, antialias)  # validates the arguments
        self.size, self.interpolation = size, interpolation
        self.max_size, self.antialias = max_size, antialias

    def _transform(self, inpt, kind, params):
        return F2.resize(inpt, self.size, self.interpolation, self.max_size, self.antialias)


class CenterCrop(Transform):
    """Crop the centre of a sample to ``size``.

    Bounding boxes and masks in the sample are transformed along with the image.

    Args:
        size: ``(h, w)`` of the crop, or an int for a square crop.
    """

    def __init__(self, size) -> None:
        self.size = _pair(size)

    def _transform(self, inpt, kind, params):
        return F2.center_crop(inpt, self.size)


def _fill_for(kind: str, fill):
    return 0 if kind == "mask" else fill


class Pad(Transform):
    """Pad the borders of a sample.

    Bounding boxes and masks in the sample are transformed along with the image.

    Args:
        padding: an int for all four borders, ``(left/right, top/bottom)``, or
            ``(left, top, right, bottom)``.
        fill: the value of new image pixels in ``"constant"`` mode (masks get 0).
        padding_mode: ``"constant"``, ``"edge"``, ``"reflect"`` or ``"symmetric"``.
    """

    def __init__(self, padding, fill=0, padding_mode: str = "constant") -> None:
        _v1.Pad(padding, fill, padding_mode)  # validates the arguments
        self.padding, self.fill, self.padding_mode = padding, fill, padding_mode

    def _transform(self, inpt, kind, params):
        return F2.pad(inpt, self.padding, _fill_for(kind, self.fill), self.padding_mode)


class RandomCrop(Transform):
    """Crop a sample at a random position, the same for every item of the sample.

    Bounding boxes and masks in the sample are transformed along with the image.

    Args:
        size: ``(h, w)`` of the crop, or an int for a square crop.
        padding: optional padding applied before cropping, in the formats that
            :class:`~ember.vision.transforms.v2.Pad` takes.
        pad_if_needed: pad a sample smaller than ``size`` up to it instead of failing.
        fill: the value of padded image pixels (masks are always padded with 0).
        padding_mode: ``"constant"``, ``"edge"``, ``"reflect"`` or ``"symmetric"``.
    """

    def __init__(
        self,
        size,
        padding=None,
        pad_if_needed: bool = False,
        fill=0,
        padding_mode: str = "constant",
    ) -> None:
        self.size = _pair(size)
        self.padding, self.pad_if_needed = padding, pad_if_needed
        self.fill, self.padding_mode = fill, padding_mode

    def _get_params(self, image) -> dict[str, Any]:
        h, w = F2.get_size(image)
        pad = _padding4(self.padding) if self.padding is not None else [0, 0, 0, 0]
        th, tw = self.size
        ph, pw = h + pad[1] + pad[3], w + pad[0] + pad[2]
        if self.pad_if_needed and pw < tw:
            diff = tw - pw
            pad[0], pad[2], pw = pad[0] + diff, pad[2] + diff, pw + 2 * diff
        if self.pad_if_needed and ph < th:
            diff = th - ph
            pad[1], pad[3], ph = pad[1] + diff, pad[3] + diff, ph + 2 * diff
        if ph < th or pw < tw:
            raise ValueError(
                f"Required crop size {(th, tw)} is larger than input image size {(ph, pw)}"
            )
        top = _v1._randint(0, ph - th + 1) if ph > th else 0
        left = _v1._randint(0, pw - tw + 1) if pw > tw else 0
        return {"pad": pad, "top": top, "left": left}

    def _transform(self, inpt, kind, params):
        if any(params["pad"]):
            inpt = F2.pad(inpt, params["pad"], _fill_for(kind, self.fill), self.padding_mode)
        return F2.crop(inpt, params["top"], params["left"], *self.size)


class RandomResizedCrop(Transform):
    """Crop a random region of a sample and resize it to ``size``.

    The region covers a random fraction of the area (within ``scale``) at a random aspect
    ratio (within ``ratio``). Bounding boxes and masks in the sample are transformed along
    with the image.

    Args:
        size: the output ``(h, w)``, or an int for a square output.
        scale: the ``(min, max)`` fraction of the area to crop.
        ratio: the ``(min, max)`` width / height ratio of the crop.
        interpolation: an :class:`~ember.vision.transforms.v2.InterpolationMode` for the
            images, bilinear by default.
        antialias: low-pass filter tensor images before downsampling.
    """

    def __init__(
        self,
        size,
        scale=(0.08, 1.0),
        ratio=(3.0 / 4.0, 4.0 / 3.0),
        interpolation=InterpolationMode.BILINEAR,
        antialias: bool | None = True,
    ):
        self.size, self.scale, self.ratio = _pair(size), scale, ratio
        self.interpolation, self.antialias = interpolation, antialias

    def _get_params(self, image):
        h, w = F2.get_size(image)
        return dict(
            zip(
                ("top", "left", "height", "width"),
                _v1._resized_crop_params(h, w, self.scale, self.ratio),
            )
        )

    def _transform(self, inpt, kind, params):
        return F2.resized_crop(
            inpt,
            params["top"],
            params["left"],
            params["height"],
            params["width"],
            self.size,
            self.interpolation,
            antialias=self.antialias,
        )


class _RandomAffineBase(Transform):
    """Draw v1's parameters once per sample; apply them to images, boxes and masks."""

    _v1: type

    def __init__(self, *args, **kwargs) -> None:
        self._impl = self._v1(*args, **kwargs)

    def __getattr__(self, name: str):
        if name == "_impl":
            raise AttributeError(name)
        return getattr(self._impl, name)

    def __repr__(self) -> str:
        return repr(self._impl)

    def _fill(self, inpt, kind: str):
        fill = self._impl.fill
        if kind == "image" and not is_pil(inpt) and isinstance(fill, (int, float)):
            return [float(fill)] * F2.get_num_channels(inpt)
        return fill


class RandomRotation(_RandomAffineBase):
    """Rotate a sample by a random angle: images, bounding boxes (their rotated corners'
    bounding box, clamped; the canvas grows with ``expand``) and masks (nearest) alike.

    Takes the arguments of :class:`~ember.vision.transforms.RandomRotation`.
    """

    _v1 = _v1.RandomRotation

    def _get_params(self, image) -> dict[str, Any]:
        return {"angle": self._impl.get_params(self._impl.degrees)}

    def _transform(self, inpt, kind, params):
        t = self._impl
        return F2.rotate(
            inpt, params["angle"], t.interpolation, t.expand, t.center, self._fill(inpt, kind)
        )


class RandomAffine(_RandomAffineBase):
    """Apply a random affine transform to a sample: images, bounding boxes (their moved
    corners' bounding box, clamped) and masks (nearest) alike.

    Takes the arguments of :class:`~ember.vision.transforms.RandomAffine`.
    """

    _v1 = _v1.RandomAffine

    def _get_params(self, image) -> dict[str, Any]:
        t = self._impl
        h, w = F2.get_size(image)
        angle, translate, scale, shear = t.get_params(
            t.degrees, t.translate, t.scale, t.shear, [w, h]
        )
        return {"angle": angle, "translate": translate, "scale": scale, "shear": shear}

    def _transform(self, inpt, kind, params):
        t = self._impl
        return F2.affine(
            inpt,
            params["angle"],
            params["translate"],
            params["scale"],
            params["shear"],
            t.interpolation,
            self._fill(inpt, kind),
            t.center,
        )


# the warps live in _warp.py (kernels and transforms together)
from ._warp import ElasticTransform, RandomPerspective  # noqa: E402
