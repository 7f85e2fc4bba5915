"""The negative binomial distribution (``torch.distributions.negative_binomial``)."""

from __future__ import annotations

import ember

from . import constraints
from ._probs_logits import _ProbsOrLogits
from .distribution import Distribution
from .gamma import Gamma
from .poisson import Poisson
from .utils import _softplus

__all__ = ["NegativeBinomial"]


class NegativeBinomial(_ProbsOrLogits, Distribution):
    """The number of successes before ``total_count`` failures in Bernoulli trials of success
    probability ``probs`` (or ``logits``, not both)."""

    arg_constraints = {
        "total_count": constraints.greater_than_eq(0),
        "probs": constraints.half_open_interval(0.0, 1.0),
        "logits": constraints.real,
    }
    support = constraints.nonnegative_integer

    def __init__(self, total_count, probs=None, logits=None, validate_args=None):
        (self.total_count,) = self._set_probs_or_logits(probs, logits, total_count)
        super().__init__(self._param.size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_probs_or_logits(
            NegativeBinomial, batch_shape, _instance, ("total_count", "probs", "logits")
        )

    @property
    def mean(self):
        return self.total_count * ember.exp(self.logits)

    @property
    def mode(self):
        return ((self.total_count - 1) * self.logits.exp()).floor().clamp(min=0.0)

    @property
    def variance(self):
        return self.mean / ember.sigmoid(-self.logits)

    def sample(self, sample_shape=()):
        # A gamma-Poisson mixture: rate ~ Gamma(total_count, exp(-logits)).
        with ember.no_grad():
            gamma = Gamma(self.total_count, ember.exp(-self.logits), validate_args=False)
            rate = gamma.sample(sample_shape)
            return Poisson(rate, validate_args=False).sample()

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        # log sigmoid(x) = -softplus(-x)
        log_unnormalized_prob = -self.total_count * _softplus(self.logits) - value * _softplus(
            -self.logits
        )
        log_normalization = (
            -ember.lgamma(self.total_count + value)
            + ember.lgamma(1.0 + value)
            + ember.lgamma(self.total_count)
        )
        # The case total_count == 0 and value == 0 has probability 1 (log_normalization is nan)
        log_normalization = ember.where(
            self.total_count + value == 0, ember.zeros_like(log_normalization), log_normalization
        )
        return log_unnormalized_prob - log_normalization
