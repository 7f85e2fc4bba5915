"""The gamma distribution (``torch.distributions.gamma``) and its reparameterized sampler."""

from __future__ import annotations

import numpy as np

import ember
from ember.autograd.function import Function
from ember.backend.finfo import np_finfo

from . import constraints
from ._reparam_grads import standard_gamma_grad
from .exp_family import ExponentialFamily
from .utils import broadcast_all

__all__ = ["Gamma"]


class _StandardGamma(Function):
    """Draws Gamma(alpha, 1) samples; the backward is the implicit reparameterization gradient
    dx/dalpha = -(dF/dalpha)(x; alpha) / f(x; alpha), F the gamma CDF and f its density
    (Figurnov et al., 2018), by torch's piecewise approximation (``_reparam_grads.py``)."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, alpha, generator=None):
        xp = ctx.xp
        x = _gamma_draw(xp, alpha, generator)
        ctx.save_for_backward(alpha, x)
        return x

    @staticmethod
    def backward(ctx, grad):
        alpha, x = ctx.saved_tensors
        return grad * _standard_gamma_grad(ctx.xp, alpha, x), None


def _standard_gamma_grad(xp, alpha, x):
    """``dx/dalpha`` of Gamma(alpha, 1) draws ``x``, torch's approximation, in ``alpha``'s
    dtype."""
    return standard_gamma_grad(xp, alpha, x).astype(alpha.dtype)


def _gamma_draw(xp, alpha, generator=None):
    """Gamma(alpha, 1) draws in ``alpha``'s dtype, at least its smallest normal number (a zero
    has no log density), from ``generator`` (the default one when None). NumPy
    float32/float64: torch's numbers (``core/_mt_samplers.py``)."""
    from ember import _mt_samplers
    from ember.random import gen_for, torch_stream

    stream = torch_stream(generator, xp)
    if stream is not None and alpha.dtype in (np.float32, np.float64):
        return _mt_samplers.gamma(stream, alpha)
    x = gen_for(generator, xp).standard_gamma(alpha.astype(np.float64))
    return xp.maximum(x, np_finfo(alpha.dtype).tiny).astype(alpha.dtype)


def _standard_gamma(concentration, generator=None):
    """A reparameterized Gamma(concentration, 1) draw of ``concentration``'s shape."""
    return _StandardGamma.apply(concentration, generator)


class Gamma(ExponentialFamily):
    """Gamma distribution parameterized by shape ``concentration`` and ``rate``."""

    arg_constraints = {"concentration": constraints.positive, "rate": constraints.positive}
    support = constraints.nonnegative
    has_rsample = True
    _mean_carrier_measure = 0

    @property
    def mean(self):
        return self.concentration / self.rate

    @property
    def mode(self):
        return ((self.concentration - 1) / self.rate).clamp(min=0)

    @property
    def variance(self):
        return self.concentration / self.rate.pow(2)

    def __init__(self, concentration, rate, validate_args=None):
        self.concentration, self.rate = broadcast_all(concentration, rate)
        super().__init__(self.concentration.size(), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Gamma, batch_shape, _instance, ("concentration", "rate"))

    def rsample(self, sample_shape=()):
        shape = tuple(self._extended_shape(sample_shape))
        value = _standard_gamma(self.concentration.expand(shape)) / self.rate.expand(shape)
        # as torch: a quotient that underflows is lifted to the smallest normal number
        tiny = float(np_finfo(value._data.dtype).tiny)
        value._data[...] = value._data.clip(min=tiny)
        return value

    def log_prob(self, value):
        value = ember.as_tensor(value, dtype=self.rate.dtype, device=self.rate.device)
        if self._validate_args:
            self._validate_sample(value)
        return (
            ember.xlogy(self.concentration, self.rate)
            + ember.xlogy(self.concentration - 1, value)
            - self.rate * value
            - ember.lgamma(self.concentration)
        )

    def entropy(self):
        return (
            self.concentration
            - ember.log(self.rate)
            + ember.lgamma(self.concentration)
            + (1.0 - self.concentration) * ember.digamma(self.concentration)
        )

    @property
    def _natural_params(self):
        return (self.concentration - 1, -self.rate)

    def _log_normalizer(self, x, y):
        return ember.lgamma(x + 1) + (x + 1) * ember.log(-y.reciprocal())

    def cdf(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return ember.special.gammainc(self.concentration, self.rate * value)
