"""The Dirichlet distribution (``torch.distributions.dirichlet``)."""

from __future__ import annotations

import numpy as np

import ember
from ember.autograd.function import Function

from . import constraints
from ._reparam_grads import dirichlet_grad
from .exp_family import ExponentialFamily

__all__ = ["Dirichlet"]


class _Dirichlet(Function):
    """``torch._sample_dirichlet`` with torch's reparameterized gradient: ``dirichlet_grad(x,
    alpha, sum(alpha)) * (grad - sum(x * grad))`` (each coordinate's Beta marginal)."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, alpha, generator=None):
        x = _dirichlet_draw(ctx.xp, alpha, generator)
        ctx.save_for_backward(alpha, x)
        return x

    @staticmethod
    def backward(ctx, grad):
        alpha, x = ctx.saved_tensors
        total = alpha.sum(-1, keepdims=True)
        scale = dirichlet_grad(ctx.xp, x, alpha, total).astype(x.dtype)
        return scale * (grad - (x * grad).sum(-1, keepdims=True)), None


def _dirichlet_draw(xp, alpha, generator=None):
    """The draw in ``alpha``'s dtype (gamma draws in float64, each row over its sum) from
    ``generator`` (the default one when None); NumPy float32/float64: torch's numbers
    (``core/_mt_samplers.py``)."""
    from ember import _mt_samplers
    from ember.backend.finfo import np_finfo
    from ember.random import gen_for, torch_stream

    stream = torch_stream(generator, xp)
    if stream is not None and alpha.dtype in (np.float32, np.float64):
        g = _mt_samplers.gamma(stream, alpha.astype(np.float64))
    else:
        g = gen_for(generator, xp).standard_gamma(alpha.astype(np.float64))
        g = xp.maximum(g, np_finfo(np.float64).tiny)
    x = (g / g.sum(-1, keepdims=True)).astype(alpha.dtype)
    one = alpha.dtype.type(1)
    return xp.clip(x, np_finfo(alpha.dtype).tiny, xp.nextafter(one, alpha.dtype.type(0)))


class Dirichlet(ExponentialFamily):
    """Dirichlet distribution over the simplex, parameterized by ``concentration`` (its last
    dimension is the event)."""

    arg_constraints = {"concentration": constraints.independent(constraints.positive, 1)}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, concentration, validate_args=None):
        if concentration.dim() < 1:
            raise ValueError("`concentration` parameter must be at least one-dimensional.")
        self.concentration = concentration
        batch_shape, event_shape = concentration.shape[:-1], concentration.shape[-1:]
        super().__init__(batch_shape, event_shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        return self._expand_params(Dirichlet, batch_shape, _instance, ("concentration",))

    def rsample(self, sample_shape=()):
        # Normalized reparameterized gamma draws: gradients flow through the gamma sampler.
        shape = tuple(self._extended_shape(sample_shape))
        return _Dirichlet.apply(self.concentration.expand(shape))

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        return (
            ember.xlogy(self.concentration - 1.0, value).sum(-1)
            + ember.lgamma(self.concentration.sum(-1))
            - ember.lgamma(self.concentration).sum(-1)
        )

    @property
    def mean(self):
        return self.concentration / self.concentration.sum(-1, True)

    @property
    def mode(self):
        concentrationm1 = (self.concentration - 1).clamp(min=0.0)
        mode = concentrationm1 / concentrationm1.sum(-1, True)
        # every concentration below one: the density peaks at a vertex (the largest one)
        mask = (self.concentration < 1).all(-1, keepdim=True)
        vertex = ember.nn.functional.one_hot(mode.argmax(-1), concentrationm1.size(-1))
        return ember.where(mask, vertex.to(mode.dtype), mode)

    @property
    def variance(self):
        con0 = self.concentration.sum(-1, True)
        return self.concentration * (con0 - self.concentration) / (con0.pow(2) * (con0 + 1))

    def entropy(self):
        k = self.concentration.size(-1)
        a0 = self.concentration.sum(-1)
        return (
            ember.lgamma(self.concentration).sum(-1)
            - ember.lgamma(a0)
            - (k - a0) * ember.digamma(a0)
            - ((self.concentration - 1.0) * ember.digamma(self.concentration)).sum(-1)
        )

    @property
    def _natural_params(self):
        return (self.concentration,)

    def _log_normalizer(self, x):
        return ember.lgamma(x).sum(-1) - ember.lgamma(x.sum(-1))
