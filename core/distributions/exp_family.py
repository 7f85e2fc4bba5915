"""``ExponentialFamily``: distributions of the form p(x; θ) = exp(<t(x), θ> - F(θ) + k(x))
(``torch.distributions.exp_family``)."""

from __future__ import annotations

import ember

from .distribution import Distribution

__all__ = ["ExponentialFamily"]


class ExponentialFamily(Distribution):
    """Base class of exponential-family distributions: ``t(x)`` the sufficient statistic,
    ``θ`` the natural parameters, ``F(θ)`` the log normalizer, ``k(x)`` the carrier measure.
    Subclasses define ``_natural_params``, ``_log_normalizer`` and ``_mean_carrier_measure``;
    then :meth:`entropy` (and the Bregman-divergence KL) come from autograd of ``F``."""

    @property
    def _natural_params(self):
        raise NotImplementedError

    def _log_normalizer(self, *natural_params):
        raise NotImplementedError

    @property
    def _mean_carrier_measure(self):
        raise NotImplementedError

    def entropy(self):
        """Entropy via the Bregman divergence of the log normalizer."""
        result = -self._mean_carrier_measure
        nparams = [p.detach().requires_grad_() for p in self._natural_params]
        with ember.enable_grad():
            lg_normal = self._log_normalizer(*nparams)
            gradients = ember.autograd.grad(lg_normal.sum(), nparams, create_graph=True)
        result = result + lg_normal
        for np_, g in zip(nparams, gradients):
            result = result - (np_ * g).reshape(*self._batch_shape, -1).sum(-1)
        return result
