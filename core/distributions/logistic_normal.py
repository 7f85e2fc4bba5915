"""The logistic-normal distribution on the simplex (``torch.distributions.logistic_normal``)."""

from __future__ import annotations

from . import constraints
from .independent import Independent
from .normal import Normal
from .transformed_distribution import TransformedDistribution
from .transforms import StickBreakingTransform
from .utils import _delegated

__all__ = ["LogisticNormal"]


class LogisticNormal(TransformedDistribution):
    """``X ~ Normal(loc, scale)`` (K - 1 dims), ``Y = StickBreaking(X)`` on the K-simplex."""

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.simplex
    has_rsample = True

    def __init__(self, loc, scale, validate_args=None):
        base_dist = Normal(loc, scale, validate_args=validate_args)
        if not base_dist.batch_shape:
            base_dist = base_dist.expand([1])
        super().__init__(
            Independent(base_dist, 1), StickBreakingTransform(), validate_args=validate_args
        )

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(LogisticNormal, _instance)
        return super().expand(batch_shape, _instance=new)

    loc = _delegated("base_dist.base_dist.loc")
    scale = _delegated("base_dist.base_dist.scale")
