"""The Cauchy (Lorentz) distribution (``torch.distributions.cauchy``)."""

from __future__ import annotations

import math

import ember

from . import constraints
from .distribution import Distribution
from .utils import broadcast_all

__all__ = ["Cauchy"]


class Cauchy(Distribution):
    """Cauchy distribution: the ratio of independent standard normals, shifted by ``loc`` and
    scaled by ``scale``."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        self.loc, self.scale = broadcast_all(loc, scale)
        super().__init__(self.loc.size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Cauchy, batch_shape, _instance, ("loc", "scale"))

    @property
    def mean(self):
        return ember.full(
            tuple(self._extended_shape()),
            float("nan"),
            dtype=self.loc.dtype,
            device=self.loc.device,
        )

    @property
    def mode(self):
        return self.loc

    @property
    def variance(self):
        return ember.full(
            tuple(self._extended_shape()),
            float("inf"),
            dtype=self.loc.dtype,
            device=self.loc.device,
        )

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        # torch's draw: loc.new(shape).cauchy_() (CPU: torch's numbers, core/_mt_samplers.py)
        eps = ember.empty(tuple(shape), dtype=self.loc.dtype, device=self.loc.device).cauchy_()
        return self.loc + eps * self.scale

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return (
            -math.log(math.pi) - self.scale.log() - (((value - self.loc) / self.scale) ** 2).log1p()
        )

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return ember.atan((value - self.loc) / self.scale) / math.pi + 0.5

    def icdf(self, value):
        return ember.tan(math.pi * (value - 0.5)) * self.scale + self.loc

    def entropy(self):
        return math.log(4 * math.pi) + self.scale.log()
