"""What HalfNormal and HalfCauchy share: ``Y = |X|`` for ``X`` symmetric about 0 with ``scale``,
so the density doubles on ``[0, inf)`` and the CDF and quantiles fold onto the base's."""

from __future__ import annotations

import math

import ember

from . import constraints
from .transformed_distribution import TransformedDistribution
from .transforms import AbsTransform
from .utils import _delegated

__all__: list[str] = []


class _HalfSymmetric(TransformedDistribution):
    """Subclasses set ``_base_cls`` (the symmetric base, built as ``_base_cls(0, scale)``)."""

    _base_cls: type
    arg_constraints = {"scale": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True

    def __init__(self, scale, validate_args=None):
        base_dist = self._base_cls(0, scale, validate_args=False)
        super().__init__(base_dist, AbsTransform(), validate_args=validate_args)

    scale = _delegated("base_dist.scale")

    @property
    def mode(self):
        return ember.zeros_like(self.scale)

    def _as_value(self, value):
        return value

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        value = self._as_value(value)
        log_prob = self.base_dist.log_prob(value) + math.log(2)
        return ember.where(value >= 0, log_prob, ember.full_like(log_prob, -math.inf))

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return 2 * self.base_dist.cdf(value) - 1

    def icdf(self, prob):
        return self.base_dist.icdf((prob + 1) / 2)

    def entropy(self):
        return self.base_dist.entropy() - math.log(2)
