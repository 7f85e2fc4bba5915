"""``ember.vision.tv_tensors``: tensors that say what they hold (torchvision's tv_tensors).

``Image`` (``(..., C, H, W)``), ``Video`` (``(..., T, C, H, W)``), ``Mask`` (``(..., H, W)``)
and ``BoundingBoxes`` (``(N, 4)``, or ``(N, 5)`` / ``(N, 8)`` for rotated boxes, with a
``format`` and the ``canvas_size`` ``(H, W)`` they live on). ``transforms.v2`` uses the type to
pick the kernel: boxes move with the image, masks resample with nearest. As in torchvision,
operations on them return plain tensors (``clone``, ``to``, ``detach``, ``requires_grad_``
and ``pin_memory`` keep the type) unless ``set_return_type("TVTensor")`` is in force; ``wrap``
re-attaches the metadata.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

import ember
from ember.tensor import Tensor

from ._tv_return_type import install_methods, set_return_type

__all__ = [
    "TVTensor",
    "Image",
    "Video",
    "Mask",
    "BoundingBoxes",
    "BoundingBoxFormat",
    "is_rotated_bounding_format",
    "KeyPoints",
    "set_return_type",
    "wrap",
]


def _as_array(data, dtype=None, device=None):
    # torch.as_tensor's dtypes: Python floats become float32, NumPy arrays keep theirs
    t = data if isinstance(data, Tensor) else ember.as_tensor(data)
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

    @classmethod
    def wrap(cls, tensor: Tensor, like: TVTensor, **kwargs):
        """``tensor`` as a ``cls`` instance (an alias that stays in the autograd graph); the
        subclasses with metadata copy it from ``like`` (``kwargs`` override it)."""
        return tensor.as_subclass(cls)

    @classmethod
    def _wrap_output(cls, output, like: TVTensor):
        # what set_return_type("TVTensor") (and clone/to/detach) return: tensors come back
        # as ``like``'s type and metadata; tuples and lists (chunk, unbind) part by part
        if isinstance(output, Tensor) and not isinstance(output, cls):
            return cls.wrap(output, like)
        if isinstance(output, (tuple, list)) and any(isinstance(p, Tensor) for p in output):
            parts = [cls._wrap_output(part, like) for part in output]
            # (max / sort / ... return named tuples: rebuilt field by field)
            return type(output)(*parts) if hasattr(output, "_fields") else type(output)(parts)
        return output

    def __deepcopy__(self, memo):
        return self.detach().clone().requires_grad_(self.requires_grad)


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


class Video(TVTensor):
    """A video tensor ``(..., T, C, H, W)``; ``transforms.v2`` transforms every frame alike."""

    __slots__ = ()

    def __new__(cls, data, *, dtype=None, device=None, requires_grad=None):
        array = _as_array(data, dtype, device)
        if array.ndim < 4:
            raise ValueError(f"Video needs at least 4 dimensions, got shape {array.shape}")
        return _grad(cls._from_array(array), requires_grad)


class Mask(TVTensor):
    """A segmentation mask ``(..., H, W)`` (a PIL image gives ``(C, H, W)``)."""

    __slots__ = ()

    def __new__(cls, data, *, dtype=None, device=None, requires_grad=None):
        if hasattr(data, "getbands"):  # PIL image: (C, H, W), as torchvision's pil_to_tensor
            arr = np.asarray(data)
            data = np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
        return _grad(cls._from_array(_as_array(data, dtype, device)), requires_grad)


class BoundingBoxFormat(Enum):
    """Coordinate format of a bounding box: ``XYXY`` (top-left and bottom-right corners),
    ``XYWH`` (top-left corner, width, height), ``CXCYWH`` (centre, width, height), and the
    rotated ones: ``XYWHR`` / ``CXCYWHR`` (the same plus a rotation ``r`` in degrees,
    counter-clockwise) and ``XYXYXYXY`` (the four corners, from the top-left one round)."""

    XYXY = "XYXY"
    XYWH = "XYWH"
    CXCYWH = "CXCYWH"
    XYWHR = "XYWHR"
    CXCYWHR = "CXCYWHR"
    XYXYXYXY = "XYXYXYXY"


# the number of values per box in each format
_BOX_WIDTH = {"XYXY": 4, "XYWH": 4, "CXCYWH": 4, "XYWHR": 5, "CXCYWHR": 5, "XYXYXYXY": 8}


def is_rotated_bounding_format(format: BoundingBoxFormat | str) -> bool:
    """Whether ``format`` is one of the rotated-box formats (``XYWHR``, ``CXCYWHR``,
    ``XYXYXYXY``)."""
    if isinstance(format, BoundingBoxFormat):
        format = format.value
    elif not isinstance(format, str):
        raise ValueError(f"format should be str or BoundingBoxFormat, got {type(format)}")
    return format in ("XYWHR", "CXCYWHR", "XYXYXYXY")


def _check_clamping_mode(mode):
    if mode is not None and mode not in ("hard", "soft"):
        raise ValueError(f"clamping_mode must be None, hard or soft, got {mode}.")
    return mode


class BoundingBoxes(TVTensor):
    """Boxes ``(N, K)`` in ``format`` on an image of ``canvas_size`` ``(H, W)``: ``K`` is 4,
    or 5 (``XYWHR``, ``CXCYWHR``) and 8 (``XYXYXYXY``) for rotated boxes, which must be
    floating point. ``clamping_mode`` says how the geometric transforms fit boxes that leave
    the canvas: ``"soft"`` (the default), ``"hard"`` or ``None`` (not clamped); for
    axis-aligned boxes soft and hard agree."""

    __slots__ = ("format", "canvas_size", "_clamping_mode")

    @property
    def clamping_mode(self) -> str | None:
        # boxes built by _from_array without the mode get torchvision's default
        return getattr(self, "_clamping_mode", "soft")

    @clamping_mode.setter
    def clamping_mode(self, mode: str | None) -> None:
        object.__setattr__(self, "_clamping_mode", _check_clamping_mode(mode))

    def __new__(
        cls,
        data,
        *,
        format,
        canvas_size,
        clamping_mode: str | None = "soft",
        dtype=None,
        device=None,
        requires_grad=None,
    ):
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
        k = _BOX_WIDTH[format.value]
        if array.ndim != 2 or array.shape[-1] != k:
            raise ValueError(
                f"BoundingBoxes in format {format.value} expect shape (N, {k}), got {array.shape}"
            )
        if k != 4 and array.dtype.kind != "f":
            raise ValueError(
                f"Rotated bounding boxes should be floating point tensors, got {array.dtype}."
            )
        if len(canvas_size) != 2:
            raise ValueError(f"canvas_size should be (height, width), got {canvas_size}")
        out = cls._from_array(
            array,
            format=format,
            canvas_size=(int(canvas_size[0]), int(canvas_size[1])),
            clamping_mode=clamping_mode,
        )
        return _grad(out, requires_grad)

    @classmethod
    def wrap(cls, tensor: Tensor, like: BoundingBoxes, **kwargs) -> BoundingBoxes:
        out = tensor.as_subclass(cls)
        fmt = kwargs.get("format", like.format)
        object.__setattr__(
            out, "format", BoundingBoxFormat[fmt.upper()] if isinstance(fmt, str) else fmt
        )
        object.__setattr__(out, "canvas_size", tuple(kwargs.get("canvas_size", like.canvas_size)))
        out.clamping_mode = kwargs.get("clamping_mode", like.clamping_mode)
        return out

    def __repr__(self) -> str:
        return (
            f"BoundingBoxes({Tensor._wrap(self._data)!r}, format={self.format}, "
            f"canvas_size={self.canvas_size}, clamping_mode={self.clamping_mode})"
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

    @classmethod
    def wrap(cls, tensor: Tensor, like: KeyPoints, **kwargs) -> KeyPoints:
        out = tensor.as_subclass(cls)
        object.__setattr__(out, "canvas_size", tuple(kwargs.get("canvas_size", like.canvas_size)))
        return out

    def __repr__(self) -> str:
        return f"KeyPoints({Tensor._wrap(self._data)!r}, canvas_size={self.canvas_size})"


def wrap(wrappee: Tensor, *, like: TVTensor, **kwargs) -> TVTensor:
    """Convert ``wrappee`` into ``like``'s :class:`TVTensor` subclass, with ``like``'s metadata
    (``format``, ``canvas_size``; ``kwargs`` override it). The result shares ``wrappee``'s data
    and stays in its autograd graph. Subclasses define how their metadata moves with their
    ``wrap`` classmethod."""
    wrap_method = getattr(type(like), "wrap", None)
    if wrap_method is not None:
        return wrap_method(wrappee, like, **kwargs)
    return wrappee.as_subclass(type(like))


install_methods(TVTensor, Tensor)
