"""``torch.nn.modules.distance``: ``PairwiseDistance`` and ``CosineSimilarity``."""

from __future__ import annotations

from .normalization_extra import CosineSimilarity, PairwiseDistance

__all__ = ["CosineSimilarity", "PairwiseDistance"]
