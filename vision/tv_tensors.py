"""``ember.vision.tv_tensors``: tensors that say what they hold (torchvision's tv_tensors).

``Image`` (``(..., C, H, W)``), ``Mask`` (``(..., H, W)``) and ``BoundingBoxes`` (``(N, 4)``
with a ``format`` and the ``canvas_size`` ``(H, W)`` they live on). ``transforms.v2`` uses
the type to pick the kernel: boxes move with the image, masks resample with nearest. As in
torchvision, arithmetic on them returns plain tensors; ``wrap`` re-attaches the metadata.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

import ember
from ember.tensor import Tensor

__all__ = [
    "TVTensor",
    "Image",
    "Mask",
    "BoundingBoxes",
    "BoundingBoxFormat",
    "is_rotated_bounding_format",
    "KeyPoints",
    "wrap",
]


def _as_array(data, dtype=None, device=None):
    t = data if isinstance(data, Tensor) else ember.as_tensor(np.asarray(data))
    if dtype is not None:
        t = t.to(dtype)
    if device is not None:
        t = t.to(device)
    return t.detach()._data


def _grad(out, requires_grad):
    # torchvision's constructors take requires_grad= (lightly's AddGridTransform passes it)
    return out.requires_grad_(True) if requires_grad else out


class TVTensor(Tensor):
    __slots__ = ()

    def __init__(self, *args, **kwargs) -> None:
        pass  # everything is set up in __new__

    @classmethod
    def _from_array(cls, array, **meta):
        out = Tensor.__new__(cls)
        src = Tensor._wrap(array)
        for cls_ in type(src).__mro__:
            for slot in getattr(cls_, "__slots__", ()):
                if slot != "__weakref__" and hasattr(src, slot):
                    object.__setattr__(out, slot, getattr(src, slot))
        for k, v in meta.items():
            object.__setattr__(out, k, v)
        return out

    def as_subclass_of_tensor(self) -> Tensor:
        return Tensor._wrap(self._data)


class Image(TVTensor):
    """An image tensor ``(..., C, H, W)``; a 2-d input gets a channel axis."""

    __slots__ = ()

    def __new__(cls, data, *, dtype=None, device=None, requires_grad=None):
        if hasattr(data, "getbands"):  # PIL image
            arr = np.asarray(data)
            arr = arr[:, :, None] if arr.ndim == 2 else arr
            data = np.ascontiguousarray(arr.transpose(2, 0, 1))
        array = _as_array(data, dtype, device)
        if array.ndim < 2:
            raise ValueError(f"Image needs at least 2 dimensions, got shape {array.shape}")
        return _grad(cls._from_array(array[None] if array.ndim == 2 else array), requires_grad)


class Mask(TVTensor):
    """A segmentation mask ``(..., H, W)`` (a PIL image gives ``(C, H, W)``)."""

    __slots__ = ()

    def __new__(cls, data, *, dtype=None, device=None, requires_grad=None):
        if hasattr(data, "getbands"):  # PIL image: (C, H, W), as torchvision's pil_to_tensor
            arr = np.asarray(data)
            data = np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        return _grad(cls._from_array(_as_array(data, dtype, device)), requires_grad)


class BoundingBoxFormat(Enum):
    XYXY = "XYXY"
    XYWH = "XYWH"
    CXCYWH = "CXCYWH"


def is_rotated_bounding_format(format: BoundingBoxFormat | str) -> bool:
    """Whether ``format`` is one of torchvision's rotated-box formats (``XYWHR``, ``CXCYWHR``,
    ``XYXYXYXY``; ember has none of them yet, so its own formats answer ``False``)."""
    if isinstance(format, BoundingBoxFormat):
        format = format.value
    return format in ("XYWHR", "CXCYWHR", "XYXYXYXY")


class BoundingBoxes(TVTensor):
    """Boxes ``(N, 4)`` in ``format`` on an image of ``canvas_size`` ``(H, W)``."""

    __slots__ = ("format", "canvas_size")

    def __new__(cls, data, *, format, canvas_size, dtype=None, device=None, requires_grad=None):
        if isinstance(format, str):
            try:
                format = BoundingBoxFormat[format.upper()]
            except KeyError:
                raise ValueError(
                    f"unknown bounding box format {format!r}; use one of "
                    f"{[f.name for f in BoundingBoxFormat]}"
                ) from None
        array = _as_array(data, dtype, device)
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[-1] != 4:
            raise ValueError(f"BoundingBoxes expects shape (N, 4), got {array.shape}")
        if len(canvas_size) != 2:
            raise ValueError(f"canvas_size should be (height, width), got {canvas_size}")
        out = cls._from_array(
            array, format=format, canvas_size=(int(canvas_size[0]), int(canvas_size[1]))
        )
        return _grad(out, requires_grad)

    def __repr__(self) -> str:
        return (
            f"BoundingBoxes({Tensor._wrap(self._data)!r}, format={self.format}, "
            f"canvas_size={self.canvas_size})"
        )


class KeyPoints(TVTensor):
    """Points ``(..., 2)`` (``[x, y]``) on an image of ``canvas_size`` ``(H, W)``: polygons
    ``(N, P, 2)``, skeletons, ... (a 1-d ``[x, y]`` becomes ``(1, 2)``). ``transforms.v2``
    moves them with the image."""

    __slots__ = ("canvas_size",)

    def __new__(cls, data, *, canvas_size, dtype=None, device=None, requires_grad=None):
        array = _as_array(data, dtype, device)
        if array.ndim == 1:
            array = array[None]
        elif array.shape[-1] != 2:
            raise ValueError(f"Expected a tensor of shape (..., 2), not {tuple(array.shape)}")
        if len(canvas_size) != 2:
            raise ValueError(f"canvas_size should be (height, width), got {canvas_size}")
        out = cls._from_array(array, canvas_size=(int(canvas_size[0]), int(canvas_size[1])))
        return _grad(out, requires_grad)

    def __repr__(self) -> str:
        return f"KeyPoints({Tensor._wrap(self._data)!r}, canvas_size={self.canvas_size})"


def wrap(wrappee: Tensor, *, like: TVTensor, **kwargs) -> TVTensor:
    """``wrappee``'s data with ``like``'s type and metadata (``kwargs`` override it)."""
    array = wrappee.detach()._data
    if isinstance(like, BoundingBoxes):
        return BoundingBoxes._from_array(
            array,
            format=kwargs.get("format", like.format),
            canvas_size=kwargs.get("canvas_size", like.canvas_size),
        )
    if isinstance(like, KeyPoints):
        return KeyPoints._from_array(array, canvas_size=kwargs.get("canvas_size", like.canvas_size))
    return type(like)._from_array(array)
