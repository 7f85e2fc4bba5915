"""``LinearTransformation``: whiten a tensor image with a square matrix and a mean vector
(torchvision's ``transforms.LinearTransformation``)."""

from __future__ import annotations

import ember
from ember.tensor import Tensor

from .transforms import _Transform

__all__ = ["LinearTransformation"]


class LinearTransformation(_Transform):
    """Flatten each ``(C, H, W)`` image, subtract ``mean_vector`` and multiply by
    ``transformation_matrix`` (a ZCA whitening matrix, say), then restore the shape.

    Args:
        transformation_matrix: ``(D, D)`` with ``D = C * H * W``.
        mean_vector: ``(D,)``.

    An :class:`~ember.nn.Module`, as torchvision's; the two tensors are plain attributes
    (not buffers), so its ``state_dict()`` is empty.
    """

    def __init__(self, transformation_matrix: Tensor, mean_vector: Tensor) -> None:
        m = transformation_matrix
        if m.size(0) != m.size(1):
            raise ValueError(
                f"transformation_matrix should be square. Got {tuple(m.size())} rectangular matrix."
            )
        if mean_vector.size(0) != m.size(0):
            raise ValueError(
                f"mean_vector should have the same length {mean_vector.size(0)} as any one of "
                f"the dimensions of the transformation_matrix [{tuple(m.size())}]"
            )
        if m.device != mean_vector.device:
            raise ValueError(
                "Input tensors should be on the same device. Got "
                f"{m.device} and {mean_vector.device}"
            )
        if m.dtype != mean_vector.dtype:
            raise ValueError(
                f"Input tensors should have the same dtype. Got {m.dtype} and {mean_vector.dtype}"
            )
        self.transformation_matrix, self.mean_vector = m, mean_vector

    def __call__(self, tensor: Tensor) -> Tensor:
        shape = tensor.shape
        n = shape[-3] * shape[-2] * shape[-1]
        if n != self.transformation_matrix.shape[0]:
            raise ValueError(
                "Input tensor and transformation matrix have incompatible shape."
                f"[{shape[-3]} x {shape[-2]} x {shape[-1]}] != "
                f"{self.transformation_matrix.shape[0]}"
            )
        if tensor.device.type != self.mean_vector.device.type:
            raise ValueError(
                "Input tensor should be on the same device as transformation matrix and mean "
                f"vector. Got {tensor.device} vs {self.mean_vector.device}"
            )
        flat = tensor.reshape(-1, n) - self.mean_vector
        out = ember.mm(flat, self.transformation_matrix.to(flat.dtype))
        return out.view(shape)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(transformation_matrix="
            f"{self.transformation_matrix.tolist()}, mean_vector={self.mean_vector.tolist()})"
        )


# Pickled by reference and repr'd as ``ember.vision.transforms.transforms``'s, as torchvision's.
LinearTransformation.__module__ = "ember.vision.transforms.transforms"
