"""The multinomial distribution (``torch.distributions.multinomial``)."""

from __future__ import annotations

import numpy as np

import ember
from ember.tensor import Size

from . import constraints
from .binomial import Binomial
from .categorical import Categorical
from .distribution import Distribution
from .utils import _delegated, xp_of

__all__ = ["Multinomial"]


class Multinomial(Distribution):
    """Counts of ``total_count`` draws from a categorical distribution given by ``probs`` or
    ``logits`` (not both). ``sample`` needs one shared ``total_count``; ``log_prob`` does not."""

    arg_constraints = {"probs": constraints.simplex, "logits": constraints.real_vector}
    total_count: int

    @property
    def mean(self):
        return self.probs * self.total_count

    @property
    def variance(self):
        return self.total_count * self.probs * (1 - self.probs)

    def __init__(self, total_count=1, probs=None, logits=None, validate_args=None):
        if not isinstance(total_count, int):
            raise NotImplementedError("inhomogeneous total_count is not supported")
        self.total_count = total_count
        self._categorical = Categorical(probs=probs, logits=logits)
        self._binomial = Binomial(total_count=total_count, probs=self.probs)
        batch_shape = self._categorical.batch_shape
        event_shape = self._categorical.param_shape[-1:]
        super().__init__(batch_shape, event_shape, validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Multinomial, _instance)
        batch_shape = Size(batch_shape)
        new.total_count = self.total_count
        new._categorical = self._categorical.expand(batch_shape)
        new._binomial = Binomial(total_count=self.total_count, probs=new._categorical.probs)
        return self._finish_expand(new, batch_shape)

    def _new(self, *args, **kwargs):
        return self._categorical._new(*args, **kwargs)

    @constraints.dependent_property(is_discrete=True, event_dim=1)
    def support(self):
        return constraints.multinomial(self.total_count)

    logits = _delegated("_categorical.logits")
    probs = _delegated("_categorical.probs")
    param_shape = _delegated("_categorical.param_shape")

    def sample(self, sample_shape=()):
        sample_shape = Size(sample_shape)
        k = self._categorical._num_events
        with ember.no_grad():
            samples = self._categorical.sample(Size((self.total_count,) + tuple(sample_shape)))
            xp = xp_of(samples)
            counts = samples._data[..., None] == xp.arange(k)
            out = counts.sum(0).astype(self.probs._data.dtype)
            return ember.Tensor._wrap(out)

    def entropy(self):
        n = ember.tensor(self.total_count, dtype=self.probs.dtype, device=self.probs.device)
        cat_entropy = self._categorical.entropy()
        support = self._binomial.enumerate_support(expand=False)[1:]
        binomial_probs = ember.exp(self._binomial.log_prob(support))
        weights = ember.lgamma(support + 1)
        return n * cat_entropy - ember.lgamma(n + 1) + (binomial_probs * weights).sum(0).sum(-1)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        shape = np.broadcast_shapes(tuple(self.logits.shape), tuple(value.shape))
        logits, value = self.logits.expand(shape), value.expand(shape)
        # 0 * -inf is 0 here: a category of probability zero observed zero times
        logits = ember.where(
            (value == 0) & (logits == float("-inf")), ember.zeros_like(logits), logits
        )
        log_factorial_n = ember.lgamma(value.sum(-1) + 1)
        log_factorial_xs = ember.lgamma(value + 1).sum(-1)
        log_powers = (logits * value).sum(-1)
        return log_factorial_n - log_factorial_xs + log_powers
