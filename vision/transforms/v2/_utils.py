"""v2's helpers for transforms written against a flat sample (torchvision's
``transforms.v2`` ``query_size``, ``query_chw``, ``has_any``, ``has_all``, ``check_type``,
``get_bounding_boxes``), for custom ``make_params`` / ``transform`` hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.tensor import Tensor

from ... import tv_tensors as tv
from .._functional_pil import is_pil

__all__ = [
    "check_type",
    "get_bounding_boxes",
    "has_all",
    "has_any",
    "is_pure_tensor",
    "query_chw",
    "query_size",
]


def is_pure_tensor(inpt: Any) -> bool:
    """Whether ``inpt`` is a tensor but no ``tv_tensors`` type (an image by convention)."""
    return isinstance(inpt, Tensor) and not isinstance(inpt, tv.TVTensor)


def check_type(obj: Any, types_or_checks: tuple[type | Callable[[Any], bool], ...]) -> bool:
    """Whether ``obj`` is an instance of one of the types or passes one of the checks."""
    for t in types_or_checks:
        if isinstance(obj, t) if isinstance(t, type) else t(obj):
            return True
    return False


def has_any(flat_inputs: list[Any], *types_or_checks: type | Callable[[Any], bool]) -> bool:
    """Whether one input of the sample matches one of ``types_or_checks``."""
    return any(check_type(x, types_or_checks) for x in flat_inputs)


def has_all(flat_inputs: list[Any], *types_or_checks: type | Callable[[Any], bool]) -> bool:
    """Whether every one of ``types_or_checks`` is matched by some input of the sample."""
    return all(any(check_type(x, (t,)) for x in flat_inputs) for t in types_or_checks)


def get_bounding_boxes(flat_inputs: list[Any]) -> tv.BoundingBoxes:
    """The sample's ``BoundingBoxes`` (one per sample, by convention)."""
    try:
        return next(x for x in flat_inputs if isinstance(x, tv.BoundingBoxes))
    except StopIteration:
        raise ValueError("No bounding boxes were found in the sample") from None


def _is_image(x) -> bool:
    return is_pure_tensor(x) or is_pil(x) or isinstance(x, tv.Image)


def _sizes_str(sizes) -> str:
    # torchvision's sequence_to_str: "'(1, 2)', '(3, 4)'"
    return ", ".join(f"'{s}'" for s in sorted(sizes))


def query_chw(flat_inputs: list[Any]) -> tuple[int, int, int]:
    """``(C, H, W)`` of the sample's images (they must agree)."""
    from .functional import get_dimensions

    chws = {tuple(get_dimensions(x)) for x in flat_inputs if _is_image(x)}
    if not chws:
        raise TypeError("No image or video was found in the sample")
    if len(chws) > 1:
        raise ValueError(f"Found multiple CxHxW dimensions in the sample: {_sizes_str(chws)}")
    c, h, w = chws.pop()
    return c, h, w


def query_size(flat_inputs: list[Any]) -> tuple[int, int]:
    """``(H, W)`` of the sample's images, masks and bounding boxes (they must agree)."""
    from .functional import get_size

    sizes = {
        tuple(get_size(x))
        for x in flat_inputs
        if _is_image(x) or isinstance(x, (tv.Mask, tv.BoundingBoxes, tv.KeyPoints))
    }
    if not sizes:
        raise TypeError("No image, video, mask, bounding box of keypoint was found in the sample")
    if len(sizes) > 1:
        raise ValueError(f"Found multiple HxW dimensions in the sample: {_sizes_str(sizes)}")
    h, w = sizes.pop()
    return h, w
