"""What the distributions parameterized by ``probs`` or ``logits`` (but not both) share:
Bernoulli, Binomial, NegativeBinomial, ContinuousBernoulli, LogitRelaxedBernoulli and
Categorical. The given one is kept as ``_param``; the other is computed on first use."""

from __future__ import annotations

from .utils import broadcast_all, lazy_property, logits_to_probs, probs_to_logits

__all__: list[str] = []


class _ProbsOrLogits:
    """Mixin (listed before the ``Distribution`` base) for the ``probs``/``logits`` pair.

    ``_is_binary`` picks the conversion: sigmoid and log-odds (True), or softmax and
    log-probabilities over the last dim (False).
    """

    _is_binary = True

    @staticmethod
    def _check_probs_or_logits(probs, logits) -> None:
        if (probs is None) == (logits is None):
            raise ValueError("Either `probs` or `logits` must be specified, but not both.")

    def _set_probs_or_logits(self, probs, logits, *others) -> list:
        """Broadcast the given one of ``probs``/``logits`` with ``others`` (such as
        ``total_count``), store it under its name and as ``_param``, and return ``others``
        broadcast and cast to its dtype."""
        self._check_probs_or_logits(probs, logits)
        name, value = ("probs", probs) if probs is not None else ("logits", logits)
        *others, param = broadcast_all(*others, value)
        setattr(self, name, param)
        self._param = param
        return [o.type_as(param) for o in others]

    def _expand_probs_or_logits(
        self, cls, batch_shape, _instance, params=("probs", "logits"), extra=()
    ):
        new = self._expand_params(cls, batch_shape, _instance, params, extra=extra)
        new._param = new.probs if "probs" in self.__dict__ else new.logits
        return new

    def _new(self, *args, **kwargs):
        return self._param.new(*args, **kwargs)

    @lazy_property
    def logits(self):
        return probs_to_logits(self.probs, is_binary=self._is_binary)

    @lazy_property
    def probs(self):
        return logits_to_probs(self.logits, is_binary=self._is_binary)

    @property
    def param_shape(self):
        return self._param.size()
