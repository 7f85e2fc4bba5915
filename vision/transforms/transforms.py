"""torchvision's v1 transform classes on ember (``ember.vision.transforms``).

Random choices make torchvision's own draws (``torch.rand(1)``, ``torch.randint``,
``torch.empty(1).uniform_``, ``torch.randperm``; Python's ``random`` for RandomChoice and
RandomOrder) on ember's default generator, whose streams follow torch's: the same
``manual_seed`` gives torchvision's crops, flips and jitter. DataLoader workers seed it per
worker. Each random class has torchvision's static ``get_params``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import ember as _ember
from ember import random as _random
from ember.nn import Module
from ember.tensor import Tensor
from ember.utils.data.transforms import Compose  # the same as torchvision's

from . import functional as F
from .functional import InterpolationMode, _pair

__all__ = [
    "Compose",
    "ToTensor",
    "PILToTensor",
    "ToPILImage",
    "ConvertImageDtype",
    "Normalize",
    "Resize",
    "CenterCrop",
    "Pad",
    "Lambda",
    "RandomApply",
    "RandomChoice",
    "RandomOrder",
    "RandomCrop",
    "RandomHorizontalFlip",
    "RandomVerticalFlip",
    "RandomResizedCrop",
    "FiveCrop",
    "TenCrop",
    "ColorJitter",
    "RandomRotation",
    "RandomAffine",
    "RandomPerspective",
    "ElasticTransform",
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
    "InterpolationMode",
]


def _rng():
    # Looked up per call: ember.manual_seed replaces the default generator's stream.
    return _random.default_generator.numpy()


# The draws below are torchvision's own calls on torch's default generator, so that the same
# ``manual_seed`` gives the same crops, flips and jitter as torchvision (ember's streams follow
# torch's: core/_mt_stream.py).
def _rand() -> float:
    return float(_ember.rand(1))  # torch.rand(1)


def _randint(low: int, high: int) -> int:
    return int(_ember.randint(low, high, (1,)))  # torch.randint(low, high, size=(1,)).item()


def _uniform(lo: float, hi: float) -> float:
    return float(_ember.empty(1).uniform_(lo, hi))  # torch.empty(1).uniform_(lo, hi).item()


def _randperm(n: int) -> list[int]:
    return _ember.randperm(n).tolist()


def _aspect_ratio(ratio) -> float:
    """The aspect-ratio draw of torchvision's RandomResizedCrop and RandomErasing: the exp of a
    float32 uniform between the float32 logs of ``ratio``."""
    lo, hi = _ember.log(_ember.tensor([float(r) for r in ratio])).tolist()
    return float(_ember.exp(_ember.empty(1).uniform_(lo, hi)))


def _setup_size(size, error_msg: str) -> tuple[int, int]:
    """torchvision's private size check, which subclasses in user code call: an int, a
    1-sequence or an ``(h, w)`` pair."""
    if isinstance(size, (int, float)):
        return int(size), int(size)
    if isinstance(size, Sequence) and len(size) == 1:
        return size[0], size[0]
    if len(size) != 2:
        raise ValueError(error_msg)
    return size


def _forwarder(self, *args, **kwargs):
    return self.forward(*args, **kwargs)


_forwarder._ember_forwarder = True


class _TransformModule(Module):
    """What v1's and v2's transform bases share. torchvision's transforms are nn.Modules
    (``nn.Sequential(CenterCrop(10), Normalize(...))`` in its docs); the Module state exists
    before any ``__init__`` runs, since ember's transforms (and users' written for ember) set
    attributes without calling ``super().__init__()``."""

    def __new__(cls, *args, **kwargs):
        self = super().__new__(cls)
        Module.__init__(self)
        return self

    def __setattr__(self, name: str, value) -> None:
        if name == "_impl":  # a v2 transform's v1 implementation: a detail, not a child Module
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def __repr__(self) -> str:
        args = ", ".join(
            f"{k}={v}" for k, v in vars(self).items() if not k.startswith("_") and k != "training"
        )
        return f"{self.__class__.__name__}({args})"


class _Transform(_TransformModule):
    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        # torchvision's transforms are nn.Modules called through ``forward``: a subclass that
        # overrides ``forward`` (the detection references' ``RandomHorizontalFlip(image,
        # target)``) must be called through it
        if "forward" in cls.__dict__ and "__call__" not in cls.__dict__:
            cls.__call__ = _forwarder

    def forward(self, *args, **kwargs):
        """torchvision's name for the call; runs the nearest transform's own ``__call__``."""
        for klass in type(self).__mro__:
            if klass is _Transform:
                break  # (Module's own __call__ would come back here)
            call = klass.__dict__.get("__call__")
            if call is not None and not getattr(call, "_ember_forwarder", False):
                return call(self, *args, **kwargs)
        raise NotImplementedError(f"{type(self).__name__} defines no transform")


class ToTensor(_Transform):
    """PIL image or ndarray ``(H, W, C)`` -> float tensor ``(C, H, W)`` in [0, 1]."""

    def __call__(self, pic) -> Tensor:
        return F.to_tensor(pic)


class PILToTensor(_Transform):
    """PIL image -> tensor ``(C, H, W)`` of the same dtype (no scaling)."""

    def __call__(self, pic) -> Tensor:
        return F.pil_to_tensor(pic)


class ToPILImage(_Transform):
    """Convert a tensor ``(C, H, W)`` or an ndarray ``(H, W, C)`` to a PIL image.

    Float tensors are multiplied by 255 and truncated to uint8 unless ``mode`` is ``"F"``.

    Args:
        mode: the PIL mode of the result; ``None`` picks one from the channel count
            (``L``, ``LA``, ``RGB`` or ``RGBA``) and the dtype.
    """

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode

    def __call__(self, pic):
        return F.to_pil_image(pic, self.mode)


class ConvertImageDtype(_Transform):
    """Convert a tensor image to ``dtype``, rescaling its values to the new dtype's range.

    Integer images span ``[0, max]`` of their type and float images ``[0, 1]``, so uint8 255
    becomes 1.0 and back.

    Args:
        dtype: the ember dtype of the result, for example ``ember.float32``.
    """

    def __init__(self, dtype) -> None:
        self.dtype = dtype

    def __call__(self, image: Tensor) -> Tensor:
        return F.convert_image_dtype(image, self.dtype)


class Normalize(_Transform):
    """Normalize a float tensor image channel by channel: ``(x - mean[c]) / std[c]``.

    Args:
        mean: one mean per channel.
        std: one standard deviation per channel (none may be zero).
        inplace: write the result into the input tensor instead of a new one.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], inplace: bool = False):
        self.mean, self.std, self.inplace = mean, std, inplace

    def __call__(self, tensor: Tensor) -> Tensor:
        return F.normalize(tensor, self.mean, self.std, self.inplace)


class Resize(_Transform):
    """Resize a PIL image or a tensor image ``(..., H, W)``.

    Args:
        size: ``(h, w)`` for an exact output size, or an int (or a one-element sequence) for
            the length of the shorter edge, the longer one following the aspect ratio.
        interpolation: an :class:`~ember.vision.transforms.InterpolationMode`, bilinear by
            default.
        max_size: with an int ``size``, the longest the longer edge may become; the image is
            shrunk further when it would exceed it.
        antialias: low-pass filter tensors before downsampling.
    """

    def __init__(
        self,
        size,
        interpolation=InterpolationMode.BILINEAR,
        max_size=None,
        antialias: bool | None = True,
    ) -> None:
        if not isinstance(size, (int, Sequence)) or (
            isinstance(size, Sequence) and len(size) not in (1, 2)
        ):
            raise TypeError(f"Size should be int or sequence of length 1 or 2. Got {size!r}")
        F._mode(interpolation)
        self.size, self.interpolation = size, interpolation
        self.max_size, self.antialias = max_size, antialias

    def __call__(self, img):
        return F.resize(img, self.size, self.interpolation, self.max_size, self.antialias)


class CenterCrop(_Transform):
    """Crop the centre of an image to ``size``.

    Args:
        size: ``(h, w)``, or an int for a square crop. An image smaller than ``size`` is padded
            with zeros.
    """

    def __init__(self, size) -> None:
        self.size = _pair(size)

    def __call__(self, img):
        return F.center_crop(img, self.size)


class Pad(_Transform):
    """Pad the borders of an image.

    Args:
        padding: an int for all four borders, ``(left/right, top/bottom)``, or
            ``(left, top, right, bottom)``.
        fill: the value of new pixels in ``"constant"`` mode.
        padding_mode: ``"constant"``, ``"edge"`` (repeat the last pixel), ``"reflect"``
            (mirror without repeating the edge) or ``"symmetric"`` (mirror including it).
    """

    def __init__(self, padding, fill=0, padding_mode: str = "constant") -> None:
        F._padding4(padding)
        if padding_mode not in ("constant", "edge", "reflect", "symmetric"):
            raise ValueError("Padding mode should be either constant, edge, reflect or symmetric")
        self.padding, self.fill, self.padding_mode = padding, fill, padding_mode

    def __call__(self, img):
        return F.pad(img, self.padding, self.fill, self.padding_mode)


class Lambda(_Transform):
    """Wrap a user function as a transform.

    Args:
        lambd: a callable applied to the input; its result is returned as is.
    """

    def __init__(self, lambd: Callable) -> None:
        if not callable(lambd):
            raise TypeError(f"Argument lambd should be callable, got {type(lambd).__name__!r}")
        self.lambd = lambd

    def __call__(self, img):
        return self.lambd(img)


class RandomApply(Compose, _Transform):
    """Apply the list of transforms with probability ``p``; an :class:`~ember.nn.Module`, as
    torchvision's (``RandomChoice`` and ``RandomOrder`` are plain objects there, and here)."""

    def __init__(self, transforms: Sequence[Callable], p: float = 0.5) -> None:
        super().__init__(transforms)
        self.p = p

    def __call__(self, img):
        return img if self.p < _rand() else super().__call__(img)

    def __repr__(self) -> str:
        body = "".join(f"\n    {t}" for t in self.transforms)
        return f"{self.__class__.__name__}(\n    p={self.p}{body}\n)"


class RandomChoice(Compose):
    """Apply one transform picked at random from a list.

    Args:
        transforms: the candidate transforms.
        p: optional weights, one per transform (normalized to sum to one); uniform when
            ``None``.
    """

    def __init__(self, transforms: Sequence[Callable], p: Sequence[float] | None = None):
        super().__init__(transforms)
        if p is not None and len(p) != len(self.transforms):
            raise ValueError(
                f"Length of p doesn't match the number of transforms: {len(p)} != "
                f"{len(self.transforms)}"
            )
        self.p = p

    def __call__(self, *args):
        # torchvision draws from Python's ``random`` here; every argument goes to the
        # picked transform, so batch transforms taking ``(images, targets)`` work (the
        # classification references' ``RandomChoice([RandomMixUp, RandomCutMix])``)
        return random.choices(self.transforms, weights=self.p)[0](*args)


class RandomOrder(Compose):
    """Apply every transform of a list, in an order shuffled anew on each call.

    Args:
        transforms: the transforms to apply.
    """

    def __call__(self, img):
        order = list(range(len(self.transforms)))
        random.shuffle(order)  # Python's ``random``, as torchvision
        for i in order:
            img = self.transforms[i](img)
        return img


# The colour and erasing classes live in their own file (imported last: they build on the
# helpers above).
from ._color_transforms import (  # noqa: E402
    ColorJitter,
    GaussianBlur,
    Grayscale,
    RandomAdjustSharpness,
    RandomAutocontrast,
    RandomEqualize,
    RandomErasing,
    RandomGrayscale,
    RandomInvert,
    RandomPosterize,
    RandomSolarize,
)

# The random and multi-crop geometry classes live in their own file (imported last: they
# build on the helpers above).
from ._geometry_transforms import (  # noqa: E402
    FiveCrop,
    RandomAffine,
    RandomCrop,
    RandomHorizontalFlip,
    RandomResizedCrop,
    RandomRotation,
    RandomVerticalFlip,
    TenCrop,
    _degrees,  # noqa: F401 (still importable from here)
    _resized_crop_params,  # noqa: F401 (still importable from here)
)
from ._linear_transform import LinearTransformation  # noqa: E402,F401
from ._warp_transforms import ElasticTransform, RandomPerspective  # noqa: E402
