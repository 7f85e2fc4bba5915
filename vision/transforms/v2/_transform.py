"""v2's transform machinery: a sample is any nest of tuples, lists and dicts whose leaves are
images, ``BoundingBoxes``, ``Mask`` s and anything else (passed through). Random parameters
are drawn once per call from the sample, then applied to every leaf with its own kernel.

Which leaves are images follows torchvision: PIL images and ``tv_tensors.Image``; a plain
tensor counts as the image only when the sample holds neither, and then only the first one.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from typing import Any

from ember.tensor import Tensor

from ... import tv_tensors as tv
from .._functional_pil import is_pil
from ..transforms import _TransformModule
from . import _register


def _flatten(obj, leaves: list) -> Callable[[list], Any]:
    """Collect ``obj``'s leaves; return a function that rebuilds it from new leaves."""
    if isinstance(obj, (tuple, list)):
        builders = [_flatten(o, leaves) for o in obj]
        kind = type(obj)

        def rebuild_seq(it):
            items = [b(it) for b in builders]
            return kind(items) if kind in (tuple, list) else kind(*items)

        return rebuild_seq
    if isinstance(obj, dict):
        builders = {k: _flatten(v, leaves) for k, v in obj.items()}
        return lambda it: type(obj)((k, b(it)) for k, b in builders.items())
    leaves.append(obj)
    return lambda it: next(it)


def _kinds(leaves: list) -> list[str]:
    # a Video is transformed as an image (its kernels see (..., T, C, H, W)); instances of a
    # user's TVTensor subclass ("custom") go to the kernels registered for them (_register.py)
    has_image = any(is_pil(x) or isinstance(x, (tv.Image, tv.Video)) for x in leaves)
    kinds, plain_taken = [], has_image
    for x in leaves:
        if _register.is_custom(x):
            kinds.append("custom")
        elif isinstance(x, tv.BoundingBoxes):
            kinds.append("boxes")
        elif isinstance(x, tv.KeyPoints):
            kinds.append("keypoints")
        elif isinstance(x, tv.Mask):
            kinds.append("mask")
        elif is_pil(x) or isinstance(x, (tv.Image, tv.Video)):
            kinds.append("image")
        elif isinstance(x, Tensor) and not isinstance(x, tv.TVTensor) and not plain_taken:
            kinds.append("image")
            plain_taken = True
        else:
            kinds.append("other")
    return kinds


def _legacy_hook(cls) -> bool:
    # torchvision < 0.21's subclass hook is ``_transform(self, inpt, params)``; ember's own
    # transforms define ``_transform(self, inpt, kind, params)``
    fn = cls._transform
    if fn is Transform._transform:
        return False
    try:
        return len(inspect.signature(fn).parameters) == 3
    except (TypeError, ValueError):
        return False


class Transform(_TransformModule):
    """Base of v2's transforms: override ``_get_params(image)`` and ``_transform(inpt, kind,
    params)``; ``kind`` is "image", "boxes" or "mask".

    As torchvision's, a transform is an :class:`~ember.nn.Module`, so ``nn.Sequential`` and
    ``nn.ModuleList`` take it (torchgeo builds ``nn.Sequential(v2.CenterCrop(224))``).

    Subclasses written for torchvision work too: torchvision's public hooks
    ``make_params(flat_inputs)`` and ``transform(inpt, params)`` (0.21+), or the older
    ``_get_params(flat_inputs)`` / ``_transform(inpt, params)``, receive the sample's images,
    bounding boxes and masks (every other leaf passes through).
    """

    # The kinds this transform touches; the others pass through unchanged.
    _kinds: tuple[str, ...] = ("image", "boxes", "mask", "keypoints")

    def _get_params(self, image) -> dict[str, Any]:
        return {}

    def _transform(self, inpt, kind: str, params: dict[str, Any]):
        raise NotImplementedError

    def _needs_transform(self, params: dict[str, Any]) -> bool:
        return True

    def _sample_params(self, leaves: list, kinds: list[str], reference) -> dict[str, Any]:
        """The parameters of one call; from the reference image unless a transform needs the
        whole sample (``RandomIoUCrop`` reads the boxes)."""
        return self._get_params(reference)

    def make_params(self, flat_inputs: list) -> dict[str, Any]:
        """torchvision's hook: the random parameters of one call, from the sample's leaves."""
        return {}

    def transform(self, inpt, params: dict[str, Any]):
        """torchvision's hook: transform one image, bounding boxes or mask leaf."""
        raise NotImplementedError

    def _torchvision_style(self, leaves: list, kinds: list[str]):
        cls = type(self)
        legacy = _legacy_hook(cls)
        if cls.transform is Transform.transform and not legacy:
            return None
        flat = [x for x, k in zip(leaves, kinds) if k != "other"]
        if cls.make_params is not Transform.make_params:
            params = self.make_params(flat)
        elif legacy and cls._get_params is not Transform._get_params:
            params = self._get_params(flat)
        else:
            params = {}
        hook = self._transform if legacy else self.transform
        return [hook(x, params) if k != "other" else x for x, k in zip(leaves, kinds)]

    def __call__(self, *inputs):
        # torchvision's Transform is an nn.Module: calling it runs ``forward``, which subclasses
        # may override whole (the segmentation references' CocoDetectionToVOCSegmentation)
        return self.forward(*inputs)

    def forward(self, *inputs):
        """Transform a sample: its images, bounding boxes and masks, the rest passed through."""
        sample = inputs if len(inputs) > 1 else inputs[0]
        leaves: list = []
        rebuild = _flatten(sample, leaves)
        kinds = _kinds(leaves)
        done = self._torchvision_style(leaves, kinds)
        if done is not None:
            return rebuild(iter(done))
        images = [x for x, k in zip(leaves, kinds) if k == "image"]
        reference = (
            images[0]
            if images
            else next(
                (x for x, k in zip(leaves, kinds) if k in ("mask", "boxes", "keypoints")), None
            )
        )
        if reference is None:
            reference = next((x for x, k in zip(leaves, kinds) if k == "custom"), None)
        if reference is None:
            raise TypeError(f"{type(self).__name__}: the sample holds no image, mask or boxes")
        params = self._sample_params(leaves, kinds, reference)
        if self._needs_transform(params):
            leaves = [self._leaf(x, k, params) for x, k in zip(leaves, kinds)]
        return rebuild(iter(leaves))

    def _leaf(self, x, kind: str, params: dict[str, Any]):
        if kind == "custom":
            return _register.run_custom(lambda x: self._transform(x, kind, params), x)
        if kind not in self._kinds:
            return x
        out = self._transform(x, kind, params)
        if isinstance(x, tv.Video) and isinstance(out, Tensor) and not isinstance(out, tv.TVTensor):
            return tv.Video._from_array(out._data)  # (the v1 colour kernels return tensors)
        return out

    def _call_kernel(self, functional, inpt, *args, **kwargs):
        """torchvision's helper for ``transform``: ``functional(inpt, ...)``, or ``inpt``
        unchanged when it is a user's TVTensor with no kernel registered for ``functional``."""
        if _register.is_custom(inpt):
            return _register.run_custom(lambda x: functional(x, *args, **kwargs), inpt)
        return functional(inpt, *args, **kwargs)


def v2_repr(obj, names: tuple[str, ...]) -> str:
    """torchvision's v2 ``Transform.extra_repr`` over ``names`` (its attribute order): values
    that are no bool, number, string, tuple, list or enum (``fill=None``) are left out."""
    shown = (bool, int, float, str, tuple, list, enum.Enum)
    args = [f"{k}={v}" for k in names if isinstance(v := getattr(obj, k), shown)]
    return f"{type(obj).__name__}({', '.join(args)})"


class ImageOnly(Transform):
    """Applies a v1 transform (colour, normalisation, ...) to the image leaves only."""

    _kinds = ("image",)
    _v1: type

    def __init__(self, *args, **kwargs) -> None:
        self._impl = self._v1(*args, **kwargs)

    def _transform(self, inpt, kind, params):
        out = self._impl(inpt)
        return tv.Image._from_array(out._data) if isinstance(inpt, tv.Image) else out

    def __getattr__(self, name: str):
        if name == "_impl":
            raise AttributeError(name)
        return getattr(self._impl, name)

    def __repr__(self) -> str:
        return repr(self._impl)
