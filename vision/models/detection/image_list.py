"""``ImageList``: a padded batch of images with each image's size before padding."""

from __future__ import annotations

from ember import Tensor

__all__ = ["ImageList"]


class ImageList:
    """``tensors`` ``(N, C, H, W)`` holds the padded batch; ``image_sizes[i]`` is image
    ``i``'s ``(height, width)`` inside it."""

    def __init__(self, tensors: Tensor, image_sizes: list[tuple[int, int]]) -> None:
        self.tensors = tensors
        self.image_sizes = image_sizes

    def to(self, device) -> ImageList:
        return ImageList(self.tensors.to(device), self.image_sizes)
