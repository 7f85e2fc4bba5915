"""``FakeData``: random images, reproducible per index (no files needed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .vision import VisionDataset

__all__ = ["FakeData"]


class FakeData(VisionDataset):
    """``size`` random PIL images of ``image_size`` (C, H, W) with labels in
    ``[0, num_classes)``. Sample ``i`` is drawn from a generator seeded with
    ``i + random_offset``, so it is the same on every call and in every worker (the pixels are
    not torchvision's: its generator is torch's)."""

    def __init__(
        self,
        size: int = 1000,
        image_size: tuple[int, int, int] = (3, 224, 224),
        num_classes: int = 10,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
        random_offset: int = 0,
    ) -> None:
        super().__init__(None, transform=transform, target_transform=target_transform)
        if len(image_size) != 3 or image_size[0] not in (1, 3, 4):
            raise ValueError(
                f"image_size should be (C, H, W) with C in 1, 3 or 4; got {image_size}"
            )
        self.size, self.num_classes = size, num_classes
        self.image_size, self.random_offset = tuple(image_size), random_offset

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        if index >= len(self):
            raise IndexError(f"{type(self).__name__} index out of range")
        from ember.vision.transforms import functional as F

        rng = np.random.default_rng(index + self.random_offset)
        img = rng.standard_normal(self.image_size).astype(np.float32)
        target = int(rng.integers(0, self.num_classes))
        # ToPILImage's rule: float pixels scaled by 255 and cast (clipped into uint8's range).
        pixels = np.clip(img * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)
        return self._apply(F.to_pil_image(np.ascontiguousarray(pixels)), target)

    def __len__(self) -> int:
        return self.size
