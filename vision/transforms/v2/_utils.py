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


# ---- fill arguments: torchvision's private helpers, which custom v2 transforms call (the
# segmentation references' ``PadIfSmaller``: ``fill={tv_tensors.Mask: 255, "others": 0}``)


def _check_fill_arg(fill) -> None:
    if isinstance(fill, dict):
        for value in fill.values():
            _check_fill_arg(value)
    elif fill is not None and not isinstance(fill, (int, float, tuple, list)):
        raise TypeError(
            "Got inappropriate fill arg, only Numbers, tuples, lists and dicts are allowed."
        )


def _convert_fill_arg(fill):
    """A number stays a number, a sequence becomes a list of floats; ``None`` stays ``None``
    (no fill is not the same as a fill of 0)."""
    if fill is None or isinstance(fill, (int, float)):
        return fill
    return [float(v) for v in fill]


def _setup_fill_arg(fill) -> dict:
    """``fill`` as a dict from input type (or ``"others"``) to its fill value."""
    _check_fill_arg(fill)
    if isinstance(fill, dict):
        return {k: _convert_fill_arg(v) for k, v in fill.items()}
    return {"others": _convert_fill_arg(fill)}


def _get_fill(fill_dict: dict, inpt_type: type):
    """The fill for inputs of ``inpt_type``: its own entry, else the ``"others"`` one."""
    if inpt_type in fill_dict:
        return fill_dict[inpt_type]
    if "others" in fill_dict:
        return fill_dict["others"]
    raise RuntimeError(f"no fill value for {inpt_type.__name__} and no 'others' entry")
