"""The LKJ distribution over Cholesky factors of correlation matrices
(``torch.distributions.lkj_cholesky``)."""

from __future__ import annotations

import math

import ember
from ember.tensor import Size

from . import constraints
from .beta import Beta
from .distribution import Distribution
from .utils import _standard_draw, broadcast_all, finfo_tiny

__all__ = ["LKJCholesky"]


class LKJCholesky(Distribution):
    """LKJ distribution over lower Cholesky factors of ``dim x dim`` correlation matrices
    with ``concentration`` eta: density proportional to det(L L^T) ** (eta - 1). Sampling
    uses the onion method (Lewandowski, Kurowicka and Joe, 2009)."""

    arg_constraints = {"concentration": constraints.positive}
    support = constraints.corr_cholesky

    def __init__(self, dim, concentration=1.0, validate_args=None):
        if dim < 2:
            raise ValueError(
                f"Expected dim to be an integer greater than or equal to 2. Found dim={dim}."
            )
        self.dim = dim
        (self.concentration,) = broadcast_all(concentration)
        batch_shape = self.concentration.size()
        event_shape = Size((dim, dim))
        # This is used to draw vectorized samples from the beta distribution in Sec. 3.2.
        marginal_conc = self.concentration + 0.5 * (self.dim - 2)
        offset = ember.arange(
            self.dim - 1, dtype=self.concentration.dtype, device=self.concentration.device
        )
        offset = ember.cat([ember.zeros(1, dtype=offset.dtype, device=offset.device), offset])
        beta_conc1 = offset + 0.5
        beta_conc0 = marginal_conc.unsqueeze(-1) - 0.5 * offset
        self._beta = Beta(beta_conc1, beta_conc0)
        super().__init__(batch_shape, event_shape, validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LKJCholesky, _instance)
        batch_shape = Size(batch_shape)
        new.dim = self.dim
        new.concentration = self.concentration.expand(batch_shape)
        new._beta = self._beta.expand(tuple(batch_shape) + (self.dim,))
        return self._finish_expand(new, batch_shape)

    def sample(self, sample_shape=()):
        # Onion method: row i is sqrt(y_i) times a uniform direction in its first i entries,
        # with y_i ~ Beta; the diagonal entry completes the row to unit norm.
        with ember.no_grad():
            y = self._beta.sample(sample_shape).unsqueeze(-1)
            shape = self._extended_shape(sample_shape)
            u_normal = _standard_draw("standard_normal", shape, self.concentration).tril(-1)
            norm = u_normal.pow(2).sum(-1, keepdim=True).sqrt()
            u_hypersphere = u_normal / ember.where(norm == 0, ember.ones_like(norm), norm)
            w = ember.sqrt(y) * u_hypersphere
            tiny = finfo_tiny(w)
            diag_elems = (1 - ember.sum(w**2, dim=-1)).clamp(min=tiny).sqrt()
            eye = ember.eye(self.dim, dtype=w.dtype, device=w.device)
            return w + eye * diag_elems.unsqueeze(-1)

    def log_prob(self, value):
        # The log density of the Cholesky factor includes the Jacobian of L -> L L^T
        # (Stan reference manual, "Cholesky LKJ correlation distribution").
        if self._validate_args:
            self._validate_sample(value)
        diag_elems = ember.diagonal(value, dim1=-1, dim2=-2)[..., 1:]
        order = ember.arange(2, self.dim + 1, dtype=value.dtype, device=value.device)
        order = 2 * (self.concentration - 1).unsqueeze(-1) + self.dim - order
        unnormalized_log_pdf = ember.sum(order * ember.log(diag_elems), dim=-1)
        # Compute normalization constant (page 1999 of [1])
        dm1 = self.dim - 1
        alpha = self.concentration + 0.5 * dm1
        denominator = ember.lgamma(alpha) * dm1
        numerator = ember.mvlgamma(alpha - 0.5, dm1)
        # pi_constant in [1] is D * (D - 1) / 4 * log(pi)
        # pi_constant in multigammaln is (D - 1) * (D - 2) / 4 * log(pi)
        # hence, we need to add a pi_constant = (D - 1) * log(pi) / 2
        pi_constant = 0.5 * dm1 * math.log(math.pi)
        normalize_term = pi_constant + numerator - denominator
        return unnormalized_log_pdf - normalize_term
