"""Relaxed (Concrete) Bernoulli distributions (``torch.distributions.relaxed_bernoulli``)."""

from __future__ import annotations

import ember

from . import constraints
from ._probs_logits import _ProbsOrLogits
from .distribution import Distribution
from .transformed_distribution import TransformedDistribution
from .transforms import SigmoidTransform
from .utils import (
    _delegated,
    _standard_draw,
    broadcast_all,
    clamp_probs,
)

__all__ = ["LogitRelaxedBernoulli", "RelaxedBernoulli"]


class LogitRelaxedBernoulli(_ProbsOrLogits, Distribution):
    """The logit of a RelaxedBernoulli sample (Maddison et al., 2017; Jang et al., 2017)."""

    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.real

    def __init__(self, temperature, probs=None, logits=None, validate_args=None):
        self.temperature = temperature
        self._set_probs_or_logits(probs, logits)
        super().__init__(self._param.size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_probs_or_logits(
            LogitRelaxedBernoulli, batch_shape, _instance, extra=("temperature",)
        )

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        probs = clamp_probs(self.probs.expand(shape))
        uniforms = clamp_probs(_standard_draw("random", shape, probs))
        return (
            uniforms.log() - ember.log1p(-uniforms) + probs.log() - ember.log1p(-probs)
        ) / self.temperature

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        logits, value = broadcast_all(self.logits, value)
        diff = logits - value * self.temperature
        temp_log = ember.as_tensor(self.temperature, dtype=diff.dtype).log()
        return temp_log + diff - 2 * ember.log1p(diff.exp())


class RelaxedBernoulli(TransformedDistribution):
    """A continuous relaxation of Bernoulli on (0, 1) with ``temperature``, reparameterizable:
    the sigmoid of a :class:`LogitRelaxedBernoulli` sample."""

    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.unit_interval
    has_rsample = True

    def __init__(self, temperature, probs=None, logits=None, validate_args=None):
        base_dist = LogitRelaxedBernoulli(temperature, probs, logits)
        super().__init__(base_dist, SigmoidTransform(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(RelaxedBernoulli, _instance)
        return super().expand(batch_shape, _instance=new)

    temperature = _delegated("base_dist.temperature")
    logits = _delegated("base_dist.logits")
    probs = _delegated("base_dist.probs")
