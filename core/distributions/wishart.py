"""The Wishart distribution over positive-definite matrices (``torch.distributions.wishart``)."""

from __future__ import annotations

import math
from numbers import Number

import numpy as np

import ember
from ember.tensor import Size

from . import constraints
from .chi2 import Chi2
from .distribution import Distribution
from .multivariate_normal import _check_one_matrix, _expand_matrices, _scale_tril_of
from .utils import _standard_draw, lazy_property

__all__ = ["Wishart"]


def _mvdigamma(x, p: int):
    """The multivariate digamma function: sum of digamma(x - i / 2) for i < p."""
    offsets = ember.arange(p, dtype=x.dtype, device=x.device) / 2
    return ember.digamma(x.unsqueeze(-1) - offsets).sum(-1)


def _diag(m):
    return ember.diagonal(m, dim1=-2, dim2=-1)


class Wishart(Distribution):
    """Wishart distribution with ``df`` degrees of freedom (greater than p - 1) and exactly one
    of ``covariance_matrix``, ``precision_matrix`` or ``scale_tril``. ``rsample`` uses the
    Bartlett decomposition, so gradients flow to ``df`` and the scale."""

    arg_constraints = {
        "covariance_matrix": constraints.positive_definite,
        "precision_matrix": constraints.positive_definite,
        "scale_tril": constraints.lower_cholesky,
        "df": constraints.greater_than(0),
    }
    support = constraints.positive_definite
    has_rsample = True
    _mean_carrier_measure = 0

    def __init__(
        self, df, covariance_matrix=None, precision_matrix=None, scale_tril=None, validate_args=None
    ):
        _check_one_matrix(covariance_matrix, precision_matrix, scale_tril)
        param = next(p for p in (covariance_matrix, precision_matrix, scale_tril) if p is not None)
        if param.dim() < 2:
            raise ValueError(
                "scale_tril must be at least two-dimensional, with optional "
                "leading batch dimensions"
            )
        if isinstance(df, Number):
            batch_shape = tuple(param.shape[:-2])
            self.df = ember.tensor(float(df), dtype=param.dtype, device=param.device)
        else:
            batch_shape = np.broadcast_shapes(tuple(param.shape[:-2]), tuple(df.shape))
            self.df = df.expand(batch_shape)
        event_shape = param.shape[-2:]
        p = event_shape[-1]
        if bool((self.df <= p - 1).any()):
            raise ValueError(f"Value of df={df} expected to be greater than ndim - 1 = {p - 1}.")
        if scale_tril is not None:
            self.scale_tril = param.expand(*batch_shape, -1, -1)
        elif covariance_matrix is not None:
            self.covariance_matrix = param.expand(*batch_shape, -1, -1)
        else:
            self.precision_matrix = param.expand(*batch_shape, -1, -1)
        self.arg_constraints = dict(self.arg_constraints)
        self.arg_constraints["df"] = constraints.greater_than(p - 1)
        if self.df.dim() < len(batch_shape):
            self.df = self.df.expand(batch_shape)
        super().__init__(batch_shape, event_shape, validate_args=validate_args)
        self._unbroadcasted_scale_tril = _scale_tril_of(
            covariance_matrix, precision_matrix, scale_tril
        )
        # Chi2 distributions of the Bartlett decomposition's diagonal
        offsets = ember.arange(p, dtype=self.df.dtype, device=self.df.device)
        self._dist_chi2 = Chi2(df=self.df.unsqueeze(-1) - offsets)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(Wishart, _instance)
        batch_shape = Size(batch_shape)
        cov_shape = tuple(batch_shape) + tuple(self.event_shape)
        new._unbroadcasted_scale_tril = self._unbroadcasted_scale_tril.expand(cov_shape)
        new.df = self.df.expand(batch_shape)
        new.arg_constraints = self.arg_constraints
        _expand_matrices(self, new, cov_shape)
        p = self.event_shape[-1]
        offsets = ember.arange(p, dtype=new.df.dtype, device=new.df.device)
        new._dist_chi2 = Chi2(df=new.df.unsqueeze(-1) - offsets)
        return self._finish_expand(new, batch_shape)

    @lazy_property
    def scale_tril(self):
        return self._unbroadcasted_scale_tril.expand(
            tuple(self._batch_shape) + tuple(self._event_shape)
        )

    @lazy_property
    def covariance_matrix(self):
        L = self._unbroadcasted_scale_tril
        return ember.matmul(L, L.mT).expand(tuple(self._batch_shape) + tuple(self._event_shape))

    @lazy_property
    def precision_matrix(self):
        L = self._unbroadcasted_scale_tril
        eye = ember.eye(L.shape[-1], dtype=L.dtype, device=L.device)
        L_inv = ember.linalg.solve_triangular(L, eye.expand(L.shape), upper=False)
        return ember.matmul(L_inv.mT, L_inv).expand(
            tuple(self._batch_shape) + tuple(self._event_shape)
        )

    @property
    def mean(self):
        return self.df.reshape(*self._batch_shape, 1, 1) * self.covariance_matrix

    @property
    def mode(self):
        factor = self.df - self.covariance_matrix.shape[-1] - 1
        factor = ember.where(factor <= 0, ember.full_like(factor, float("nan")), factor)
        return factor.reshape(*self._batch_shape, 1, 1) * self.covariance_matrix

    @property
    def variance(self):
        V = self.covariance_matrix  # has shape (batch_shape x event_shape)
        diag_V = _diag(V)
        return self.df.reshape(*self._batch_shape, 1, 1) * (
            V.pow(2) + diag_V.unsqueeze(-1) * diag_V.unsqueeze(-2)
        )

    def rsample(self, sample_shape=()):
        # Bartlett decomposition: A lower triangular, chi-distributed diagonal, normal below it.
        sample_shape = Size(sample_shape)
        shape = self._extended_shape(sample_shape)
        p = self._event_shape[-1]
        noise = _standard_draw("standard_normal", shape, self.df).tril(-1)
        chi = self._dist_chi2.rsample(sample_shape).sqrt()
        eye = ember.eye(p, dtype=self.df.dtype, device=self.df.device)
        A = noise + eye * chi.unsqueeze(-1)
        LA = ember.matmul(self._unbroadcasted_scale_tril, A)
        return ember.matmul(LA, LA.mT)

    def log_prob(self, value):
        if self._validate_args:
            self._validate_sample(value)
        nu = self.df  # has shape (batch_shape)
        p = self._event_shape[-1]  # has singleton shape
        L = self._unbroadcasted_scale_tril
        half_log_det = _diag(L).log().sum(-1)
        value_logdet = 2 * _diag(ember.linalg.cholesky(value)).log().sum(-1)
        shape = np.broadcast_shapes(tuple(L.shape), tuple(value.shape))
        M = ember.linalg.solve_triangular(L.expand(shape), value.expand(shape), upper=False)
        M = ember.linalg.solve_triangular(L.expand(shape), M.mT, upper=False)
        trace = _diag(M).sum(-1)  # tr(Sigma^-1 X) = tr(L^-1 X L^-T)
        return (
            -nu * (p * math.log(2) / 2 + half_log_det)
            - ember.mvlgamma(nu / 2, p)
            + (nu - p - 1) / 2 * value_logdet
            - trace / 2
        )

    def entropy(self):
        nu = self.df  # has shape (batch_shape)
        p = self._event_shape[-1]  # has singleton shape
        half_log_det = _diag(self._unbroadcasted_scale_tril).log().sum(-1)
        return (
            (p + 1) * (p * math.log(2) / 2 + half_log_det)
            + ember.mvlgamma(nu / 2, p)
            - (nu - p - 1) / 2 * _mvdigamma(nu / 2, p)
            + nu * p / 2
        )

    @property
    def _natural_params(self):
        nu = self.df  # has shape (batch_shape)
        p = self._event_shape[-1]  # has singleton shape
        return -self.precision_matrix / 2, (nu - p - 1) / 2

    def _log_normalizer(self, x, y):
        p = self._event_shape[-1]
        return (y + (p + 1) / 2) * (
            -ember.linalg.slogdet(-2 * x).logabsdet + p * math.log(2)
        ) + ember.mvlgamma(y + (p + 1) / 2, p)
