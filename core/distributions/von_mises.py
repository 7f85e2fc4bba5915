"""The von Mises distribution on the circle (``torch.distributions.von_mises``)."""

from __future__ import annotations

import math

import numpy as np

import ember
from ember.tensor import Size, Tensor

from . import constraints
from .distribution import Distribution
from .utils import broadcast_all, lazy_property, xp_of

__all__ = ["VonMises"]


def _log_modified_bessel_fn(x, order=0):
    """log I_order(x) for x > 0, through the exponentially scaled Bessel functions."""
    assert order == 0 or order == 1
    fn = ember.special.i0e if order == 0 else ember.special.i1e
    return ember.log(fn(x)) + x


class VonMises(Distribution):
    """A circular von Mises distribution with mean direction ``loc`` and ``concentration``
    (kappa). ``sample`` draws with the Best-Fisher rejection sampler of the underlying RNG;
    there is no ``rsample``."""

    arg_constraints = {"loc": constraints.real, "concentration": constraints.positive}
    support = constraints.real
    has_rsample = False

    def __init__(self, loc, concentration, validate_args=None):
        self.loc, self.concentration = broadcast_all(loc, concentration)
        batch_shape = self.loc.shape
        event_shape = Size()
        super().__init__(batch_shape, event_shape, validate_args)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        log_prob = self.concentration * ember.cos(value - self.loc)
        return (
            log_prob - math.log(2 * math.pi) - _log_modified_bessel_fn(self.concentration, order=0)
        )

    @lazy_property
    def _loc(self):
        return self.loc.double()

    @lazy_property
    def _concentration(self):
        return self.concentration.double()

    def sample(self, sample_shape=()):
        from ember.random import gen_for

        shape = tuple(self._extended_shape(sample_shape))
        xp = xp_of(self.loc)
        # Draw on the CPU in float64 (CuPy's Generator has no von Mises sampler).
        loc = np.broadcast_to(np.asarray(ember.Tensor.numpy(self.loc.detach().cpu())), shape)
        kappa = np.broadcast_to(
            np.asarray(ember.Tensor.numpy(self.concentration.detach().cpu())), shape
        )
        x = gen_for(None, np).vonmises(loc.astype(np.float64), kappa.astype(np.float64))
        x = (x + math.pi) % (2 * math.pi) - math.pi
        return Tensor._wrap(xp.asarray(x.astype(self.loc._data.dtype)))

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(VonMises, batch_shape, _instance, ("loc", "concentration"))

    @property
    def mean(self):
        """The provided mean is the circular one."""
        return self.loc

    @property
    def mode(self):
        return self.loc

    @lazy_property
    def variance(self):
        """The provided variance is the circular one."""
        return (
            1
            - (
                _log_modified_bessel_fn(self.concentration, order=1)
                - _log_modified_bessel_fn(self.concentration, order=0)
            ).exp()
        )
