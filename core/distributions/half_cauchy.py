"""The half-Cauchy distribution (``torch.distributions.half_cauchy``)."""

from __future__ import annotations

import math

import ember

from ._half import _HalfSymmetric
from .cauchy import Cauchy

__all__ = ["HalfCauchy"]


class HalfCauchy(_HalfSymmetric):
    """``X ~ Cauchy(0, scale)``, ``Y = |X| ~ HalfCauchy(scale)``."""

    _base_cls = Cauchy

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(HalfCauchy, _instance)
        return super().expand(batch_shape, _instance=new)

    @property
    def mean(self):
        return ember.full(
            tuple(self._extended_shape()),
            math.inf,
            dtype=self.scale.dtype,
            device=self.scale.device,
        )

    @property
    def variance(self):
        return self.base_dist.variance

    def _as_value(self, value):
        return ember.as_tensor(value, dtype=self.scale.dtype, device=self.scale.device)
