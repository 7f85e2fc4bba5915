"""Inference presets of the pretrained weights (torchvision's ``transforms._presets``): each an
:class:`~ember.nn.Module` whose ``forward`` prepares an input for the model, with torchvision's
multi-line ``repr`` and ``describe()`` text (``weights.transforms()`` returns one)."""

from __future__ import annotations

from collections.abc import Sequence

import ember
from ember import nn
from ember.tensor import Tensor

from . import functional as F


def _preset_repr(obj, names: tuple[str, ...]) -> str:
    body = "".join(f"\n    {k}={getattr(obj, k)}" for k in names)
    return f"{type(obj).__name__}({body}\n)"


class ObjectDetection(nn.Module):
    """The detection models' preset: a PIL image or a tensor, as float in [0, 1]."""

    def forward(self, img) -> Tensor:
        if not isinstance(img, Tensor):
            img = F.pil_to_tensor(img)
        return F.convert_image_dtype(img, ember.float32)

    def __repr__(self) -> str:
        return self.__class__.__name__ + "()"

    def describe(self) -> str:
        return (
            "Accepts ``PIL.Image``, batched ``(B, C, H, W)`` and single ``(C, H, W)`` image "
            "tensors. The images are rescaled to ``[0.0, 1.0]``."
        )


class ImageClassification(nn.Module):
    """Resize the shorter side to ``resize_size``, centre-crop ``crop_size``, scale to [0, 1]
    and normalize with ImageNet's mean and std (PIL images or tensors in)."""

    def __init__(
        self,
        *,
        crop_size: int,
        resize_size: int = 256,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        interpolation=F.InterpolationMode.BILINEAR,
        antialias: bool | None = True,
    ):
        super().__init__()
        self.crop_size, self.resize_size = [crop_size], [resize_size]
        self.mean, self.std = list(mean), list(std)
        self.interpolation, self.antialias = interpolation, antialias

    def forward(self, img) -> Tensor:
        img = F.resize(img, self.resize_size, self.interpolation, antialias=self.antialias)
        img = F.center_crop(img, self.crop_size)
        if not isinstance(img, Tensor):
            img = F.pil_to_tensor(img)
        img = F.convert_image_dtype(img, ember.float32)
        return F.normalize(img, self.mean, self.std)

    def __repr__(self) -> str:
        names = ("crop_size", "resize_size", "mean", "std", "interpolation")
        return _preset_repr(self, names)

    def describe(self) -> str:
        return (
            "Accepts ``PIL.Image``, batched ``(B, C, H, W)`` and single ``(C, H, W)`` image "
            f"tensors. The images are resized to ``resize_size={self.resize_size}`` using "
            f"``interpolation={self.interpolation}``, followed by a central crop of "
            f"``crop_size={self.crop_size}``. Finally the values are first rescaled to "
            f"``[0.0, 1.0]`` and then normalized using ``mean={self.mean}`` and "
            f"``std={self.std}``."
        )


class VideoClassification(nn.Module):
    """A video clip ``(T, C, H, W)`` or a batch ``(N, T, C, H, W)`` of uint8 frames: resize
    each frame to ``resize_size`` (no antialiasing, as torchvision's preset), centre-crop
    ``crop_size``, scale to [0, 1], normalize with Kinetics-400's mean and std, and return
    ``(C, T, H, W)`` (``(N, C, T, H, W)``), the video models' layout."""

    def __init__(
        self,
        *,
        crop_size: tuple[int, int],
        resize_size: tuple[int, int],
        mean: Sequence[float] = (0.43216, 0.394666, 0.37645),
        std: Sequence[float] = (0.22803, 0.22145, 0.216989),
        interpolation=F.InterpolationMode.BILINEAR,
    ):
        super().__init__()
        self.crop_size, self.resize_size = list(crop_size), list(resize_size)
        self.mean, self.std = list(mean), list(std)
        self.interpolation = interpolation

    def forward(self, vid: Tensor) -> Tensor:
        squeeze = vid.ndim < 5
        if squeeze:
            vid = vid.unsqueeze(0)
        n, t, c, h, w = vid.shape
        vid = vid.reshape(-1, c, h, w)
        vid = F.resize(vid, self.resize_size, self.interpolation, antialias=False)
        vid = F.center_crop(vid, self.crop_size)
        vid = F.normalize(F.convert_image_dtype(vid, ember.float32), self.mean, self.std)
        vid = vid.reshape(n, t, c, *self.crop_size).permute(0, 2, 1, 3, 4)
        return vid.squeeze(0) if squeeze else vid

    def __repr__(self) -> str:
        names = ("crop_size", "resize_size", "mean", "std", "interpolation")
        return _preset_repr(self, names)

    def describe(self) -> str:
        return (
            "Accepts batched ``(B, T, C, H, W)`` and single ``(T, C, H, W)`` video frame "
            f"tensors. The frames are resized to ``resize_size={self.resize_size}`` using "
            f"``interpolation={self.interpolation}``, followed by a central crop of "
            f"``crop_size={self.crop_size}``. Finally the values are first rescaled to "
            f"``[0.0, 1.0]`` and then normalized using ``mean={self.mean}`` and "
            f"``std={self.std}``. Finally the output dimensions are permuted to "
            "``(..., C, T, H, W)`` tensors."
        )


class SemanticSegmentation(nn.Module):
    """The segmentation models' preset: resize the shorter side to ``resize_size`` (none when
    ``None``), scale to [0, 1] and normalize with ImageNet's mean and std."""

    def __init__(
        self,
        *,
        resize_size: int | None,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        interpolation=F.InterpolationMode.BILINEAR,
        antialias: bool | None = True,
    ) -> None:
        super().__init__()
        self.resize_size = [resize_size] if resize_size is not None else None
        self.mean, self.std = list(mean), list(std)
        self.interpolation, self.antialias = interpolation, antialias

    def forward(self, img) -> Tensor:
        if isinstance(self.resize_size, list):
            img = F.resize(img, self.resize_size, self.interpolation, antialias=self.antialias)
        if not isinstance(img, Tensor):
            img = F.pil_to_tensor(img)
        img = F.convert_image_dtype(img, ember.float32)
        return F.normalize(img, self.mean, self.std)

    def __repr__(self) -> str:
        return _preset_repr(self, ("resize_size", "mean", "std", "interpolation"))

    def describe(self) -> str:
        return (
            "Accepts ``PIL.Image``, batched ``(B, C, H, W)`` and single ``(C, H, W)`` image "
            f"tensors. The images are resized to ``resize_size={self.resize_size}`` using "
            f"``interpolation={self.interpolation}``. Finally the values are first rescaled to "
            f"``[0.0, 1.0]`` and then normalized using ``mean={self.mean}`` and "
            f"``std={self.std}``."
        )


class OpticalFlow(nn.Module):
    """The optical-flow models' preset: ``forward(img1, img2)`` takes two PIL images or
    ``(C, H, W)`` / ``(N, C, H, W)`` tensors (uint8 or float), scales them to [0, 1] and maps
    that to [-1, 1]; returns the two float tensors (no resizing: RAFT takes any size that
    divides by 8)."""

    def forward(self, img1, img2) -> tuple[Tensor, Tensor]:
        out = []
        for img in (img1, img2):
            if not isinstance(img, Tensor):
                img = F.pil_to_tensor(img)
            img = F.convert_image_dtype(img, ember.float32)
            img = F.normalize(img, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
            out.append(img.contiguous())
        return out[0], out[1]

    def __repr__(self) -> str:
        return self.__class__.__name__ + "()"

    def describe(self) -> str:
        return (
            "Accepts ``PIL.Image``, batched ``(B, C, H, W)`` and single ``(C, H, W)`` image "
            "tensors. The images are rescaled to ``[-1.0, 1.0]``."
        )
