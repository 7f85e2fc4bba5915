"""The generalized Pareto distribution (``torch.distributions.generalized_pareto``)."""

from __future__ import annotations

import math

import ember

from . import constraints
from .distribution import Distribution
from .utils import _standard_draw, broadcast_all

__all__ = ["GeneralizedPareto"]


class GeneralizedPareto(Distribution):
    """Generalized Pareto distribution with ``loc``, ``scale`` and ``concentration`` (the
    shape xi): exponential at xi = 0, bounded above for xi < 0."""

    arg_constraints = {
        "loc": constraints.real,
        "scale": constraints.positive,
        "concentration": constraints.real,
    }
    has_rsample = True

    def __init__(self, loc, scale, concentration, validate_args=None):
        self.loc, self.scale, self.concentration = broadcast_all(loc, scale, concentration)
        super().__init__(self.loc.size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(
            GeneralizedPareto, batch_shape, _instance, ("loc", "scale", "concentration")
        )

    def _safe(self):
        eq_zero = self.concentration.abs() < 1e-8
        return eq_zero, ember.where(
            eq_zero, ember.ones_like(self.concentration), self.concentration
        )

    def rsample(self, sample_shape=()):
        shape = self._extended_shape(sample_shape)
        u = _standard_draw("random", shape, self.loc)
        return self.icdf(u)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        z = (value - self.loc) / self.scale
        eq_zero, safe_conc = self._safe()
        y = 1 / safe_conc + 1
        where_nonzero = y * ember.log1p(safe_conc * z)
        log_scale = self.scale.log()
        return -log_scale - ember.where(eq_zero, z, where_nonzero)

    def log_survival_function(self, value):
        z = (value - self.loc) / self.scale
        eq_zero, safe_conc = self._safe()
        where_nonzero = -ember.log1p(safe_conc * z) / safe_conc
        return ember.where(eq_zero, -z, where_nonzero)

    def log_cdf(self, value):
        return ember.log1p(-ember.exp(self.log_survival_function(value)))

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return -ember.expm1(self.log_survival_function(value))

    def icdf(self, value):
        eq_zero, safe_conc = self._safe()
        logu = ember.log1p(-value)
        where_nonzero = self.loc + self.scale / safe_conc * ember.expm1(-safe_conc * logu)
        return ember.where(eq_zero, self.loc - self.scale * logu, where_nonzero)

    @property
    def mean(self):
        valid = self.concentration < 1
        safe_conc = ember.where(valid, self.concentration, 0.5 * ember.ones_like(self.loc))
        result = self.loc + self.scale / (1 - safe_conc)
        return ember.where(valid, result, ember.full_like(result, math.nan))

    @property
    def variance(self):
        valid = self.concentration < 0.5
        safe_conc = ember.where(valid, self.concentration, 0.25 * ember.ones_like(self.loc))
        result = self.scale**2 / ((1 - safe_conc) ** 2 * (1 - 2 * safe_conc))
        return ember.where(valid, result, ember.full_like(result, math.nan))

    @property
    def mode(self):
        return self.loc

    def entropy(self):
        return ember.log(self.scale) + self.concentration + 1

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        lower = self.loc
        safe = ember.where(
            self.concentration < 0, self.concentration, -ember.ones_like(self.concentration)
        )
        upper = ember.where(
            self.concentration < 0, lower - self.scale / safe, ember.full_like(lower, math.inf)
        )
        return constraints.interval(lower, upper)
