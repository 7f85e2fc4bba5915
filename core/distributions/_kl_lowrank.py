"""KL divergences involving :class:`LowRankMultivariateNormal` (PyTorch's three pairs).

Pyro's ``AutoLowRankMultivariateNormal`` guides and analytic-KL ELBOs reach for these. Each
low-rank side is viewed as a full-covariance Gaussian (``W W^T + diag(D)``, factored once by
Cholesky) and handed to the Multivariate-Normal rule, so all three share one formula and its
gradient; event dimensions in Pyro's use are small, where this costs no more than the
Woodbury form.
"""

from __future__ import annotations

from .kl import _kl_multivariatenormal_multivariatenormal, register_kl
from .lowrank_multivariate_normal import LowRankMultivariateNormal
from .multivariate_normal import MultivariateNormal


def _as_full(d):
    """``d`` as a MultivariateNormal with the same loc and covariance (no validation)."""
    if isinstance(d, MultivariateNormal):
        return d
    return MultivariateNormal(d.loc, scale_tril=d.scale_tril, validate_args=False)


def _check_event_shapes(p, q) -> None:
    if tuple(p.event_shape) != tuple(q.event_shape):
        raise ValueError(
            "KL-divergence between two (Low Rank) Multivariate Normals with different event "
            "shapes cannot be computed"
        )


@register_kl(LowRankMultivariateNormal, LowRankMultivariateNormal)
def _kl_lowrankmvn_lowrankmvn(p, q):
    _check_event_shapes(p, q)
    return _kl_multivariatenormal_multivariatenormal(_as_full(p), _as_full(q))


@register_kl(LowRankMultivariateNormal, MultivariateNormal)
def _kl_lowrankmvn_mvn(p, q):
    _check_event_shapes(p, q)
    return _kl_multivariatenormal_multivariatenormal(_as_full(p), q)


@register_kl(MultivariateNormal, LowRankMultivariateNormal)
def _kl_mvn_lowrankmvn(p, q):
    _check_event_shapes(p, q)
    return _kl_multivariatenormal_multivariatenormal(p, _as_full(q))
