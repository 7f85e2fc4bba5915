"""``MultiScaleRoIAlign``: RoIAlign over a feature pyramid, each box pooled from the level
that matches its size (Lin et al. 2017, FPN, eq. 1)."""

from __future__ import annotations

import math

import numpy as np

import ember
from ember import Tensor, nn

from ._utils import convert_boxes_to_roi_format, pair
from .boxes import box_area
from .roi_align import roi_align

__all__ = ["LevelMapper", "MultiScaleRoIAlign"]


class LevelMapper:
    """Map boxes to pyramid levels: ``floor(canonical_level + log2(sqrt(area) /
    canonical_scale) + eps)``, clamped to ``[k_min, k_max]`` and counted from ``k_min``."""

    def __init__(
        self, k_min: int, k_max: int, canonical_scale: int = 224, canonical_level: int = 4,
        eps: float = 1e-6,
    ) -> None:  # fmt: skip
        self.k_min, self.k_max = k_min, k_max
        self.s0, self.lvl0, self.eps = canonical_scale, canonical_level, eps

    def __call__(self, boxlists: list[Tensor]) -> Tensor:
        s = ember.sqrt(ember.cat([box_area(b) for b in boxlists]))
        lvls = ember.floor(self.lvl0 + ember.log2(s / self.s0) + self.eps)
        lvls = ember.clamp(lvls, min=self.k_min, max=self.k_max)
        return lvls.to(ember.int64) - self.k_min


def _infer_scale(feature: Tensor, original_size: tuple[int, int]) -> float:
    # the power of two nearest to feature size / image size (the height's)
    return 2.0 ** round(math.log2(feature.shape[-2] / original_size[0]))


class MultiScaleRoIAlign(nn.Module):
    """RoIAlign on the feature maps named ``featmap_names`` of a dict of features; a box is
    pooled from the level its size maps to (``LevelMapper``). The levels' scales are inferred
    on the first call from the feature sizes and the largest of ``image_shapes``."""

    def __init__(
        self,
        featmap_names: list[str],
        output_size: int | tuple[int, int],
        sampling_ratio: int,
        *,
        canonical_scale: int = 224,
        canonical_level: int = 4,
    ) -> None:
        super().__init__()
        self.featmap_names = featmap_names
        self.sampling_ratio = sampling_ratio
        self.output_size = pair(output_size)
        self.scales: list[float] | None = None
        self.map_levels: LevelMapper | None = None
        self.canonical_scale = canonical_scale
        self.canonical_level = canonical_level

    def _setup_scales(self, features: list[Tensor], image_shapes: list[tuple[int, int]]) -> None:
        if not image_shapes:
            raise ValueError("MultiScaleRoIAlign needs the image_shapes of the batch")
        original = (max(s[0] for s in image_shapes), max(s[1] for s in image_shapes))
        self.scales = [_infer_scale(f, original) for f in features]
        lvl_min = -math.log2(self.scales[0])
        lvl_max = -math.log2(self.scales[-1])
        self.map_levels = LevelMapper(
            int(lvl_min), int(lvl_max), self.canonical_scale, self.canonical_level
        )

    def forward(
        self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> Tensor:
        features = [v for k, v in x.items() if k in self.featmap_names]
        if not features:
            raise ValueError(
                f"none of featmap_names {self.featmap_names} is among the features {list(x)}"
            )
        if self.scales is None or self.map_levels is None:
            self._setup_scales(features, image_shapes)
        rois = convert_boxes_to_roi_format(boxes)
        if len(features) == 1:
            return roi_align(
                features[0], rois, self.output_size, self.scales[0], self.sampling_ratio
            )
        levels = self.map_levels(boxes).cpu().numpy()
        parts, order = [], []
        for level, (feature, scale) in enumerate(zip(features, self.scales)):
            idx = np.nonzero(levels == level)[0]
            if idx.size == 0:
                continue
            sel = rois[ember.from_numpy(idx).to(rois.device)]
            parts.append(roi_align(feature, sel, self.output_size, scale, self.sampling_ratio))
            order.append(idx)
        if not parts:
            c = features[0].shape[1]
            return features[0].new_zeros((0, c, *self.output_size))
        out = ember.cat(parts, dim=0)
        inverse = np.empty(levels.size, dtype=np.int64)
        inverse[np.concatenate(order)] = np.arange(levels.size)
        return out[ember.from_numpy(inverse).to(out.device)]

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(featmap_names={self.featmap_names}, "
            f"output_size={self.output_size}, sampling_ratio={self.sampling_ratio})"
        )
