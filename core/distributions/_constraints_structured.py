"""Constraints on vectors and matrices (``torch.distributions.constraints``): simplex,
multinomial counts, lower-triangular / Cholesky / correlation-Cholesky factors, square,
symmetric and positive (semi-)definite matrices, and the ``cat`` / ``stack`` combinators.

``constraints.py`` imports these classes (the package imports it first) and builds the public
instances (``constraints.simplex``, ...) from them; every name is re-exported there.
"""

from __future__ import annotations

import numpy as np

import ember
from ember.backend.finfo import np_finfo
from ember.tensor import Tensor

from .constraints import Constraint


def _raw(value):
    return value._data if isinstance(value, Tensor) else np.asarray(value)


def _xp(a):
    if type(a) is np.ndarray:
        return np
    from ember.backend import _cupy  # pragma: no cover - GPU

    return _cupy.require_cupy()  # pragma: no cover


def _bool_tensor(arr) -> Tensor:
    return Tensor._wrap(arr)


class _Simplex(Constraint):
    """Nonnegative entries along the last dim that sum to one."""

    event_dim = 1

    def check(self, value):
        return ember.all(value >= 0, dim=-1) & ((value.sum(-1) - 1).abs() < 1e-6)


class _Multinomial(Constraint):
    """Nonnegative integer counts along the last dim summing to at most ``upper_bound``."""

    is_discrete = True
    event_dim = 1

    def __init__(self, upper_bound):
        self.upper_bound = upper_bound

    def check(self, x):
        return ember.all(x >= 0, dim=-1) & (x.sum(-1) <= self.upper_bound)


class _LowerTriangular(Constraint):
    event_dim = 2

    def check(self, value):
        a = _raw(value)
        xp = _xp(a)
        tril = xp.tril(a)
        return _bool_tensor((tril == a).reshape(*a.shape[:-2], -1).min(-1).astype(bool))


class _LowerCholesky(Constraint):
    event_dim = 2

    def check(self, value):
        a = _raw(value)
        xp = _xp(a)
        lower = (xp.tril(a) == a).reshape(*a.shape[:-2], -1).min(-1).astype(bool)
        positive_diag = (xp.diagonal(a, axis1=-2, axis2=-1) > 0).min(-1).astype(bool)
        return _bool_tensor(lower & positive_diag)


class _CorrCholesky(Constraint):
    """Lower Cholesky factors of correlation matrices: rows of unit Euclidean norm."""

    event_dim = 2

    def check(self, value):
        a = _raw(value)
        xp = _xp(a)
        tol = np_finfo(a.dtype).eps * a.shape[-1] * 10
        row_norm = xp.linalg.norm(a, axis=-1)
        unit = (xp.abs(row_norm - 1.0) <= tol).min(-1).astype(bool)
        return _LowerCholesky().check(value) & _bool_tensor(unit)


class _Square(Constraint):
    event_dim = 2

    def check(self, value):
        a = _raw(value)
        xp = _xp(a)
        return _bool_tensor(xp.full(a.shape[:-2], a.shape[-2] == a.shape[-1], dtype=bool))


class _Symmetric(_Square):
    def check(self, value):
        square_check = super().check(value)
        if not bool(square_check.all()):
            return square_check
        a = _raw(value)
        xp = _xp(a)
        close = xp.isclose(a, xp.swapaxes(a, -1, -2), atol=1e-6)
        return _bool_tensor(close.reshape(*a.shape[:-2], -1).min(-1).astype(bool))


class _PositiveSemidefinite(_Symmetric):
    def check(self, value):
        sym_check = super().check(value)
        if not bool(sym_check.all()):
            return sym_check
        a = _raw(value)
        xp = _xp(a)
        return _bool_tensor((xp.linalg.eigvalsh(a) >= 0).min(-1).astype(bool))


class _PositiveDefinite(_Symmetric):
    def check(self, value):
        sym_check = super().check(value)
        if not bool(sym_check.all()):
            return sym_check
        a = _raw(value)
        xp = _xp(a)
        return _bool_tensor((xp.linalg.eigvalsh(a) > 0).min(-1).astype(bool))


class _Cat(Constraint):
    """Applies a sequence of constraints to submatrices of ``dim``, of sizes ``lengths``."""

    def __init__(self, cseq, dim=0, lengths=None):
        assert all(isinstance(c, Constraint) for c in cseq)
        self.cseq = list(cseq)
        if lengths is None:
            lengths = [1] * len(self.cseq)
        self.lengths = list(lengths)
        assert len(self.lengths) == len(self.cseq)
        self.dim = dim
        super().__init__()

    @property
    def is_discrete(self) -> bool:  # type: ignore[override]
        return any(c.is_discrete for c in self.cseq)

    @property
    def event_dim(self) -> int:  # type: ignore[override]
        return max(c.event_dim for c in self.cseq)

    def check(self, value):
        assert -value.dim() <= self.dim < value.dim()
        checks = []
        start = 0
        for constr, length in zip(self.cseq, self.lengths):
            v = value.narrow(self.dim, start, length)
            checks.append(constr.check(v))
            start = start + length
        return ember.cat(checks, self.dim)


class _Stack(Constraint):
    """Applies a sequence of constraints to the slices of ``dim``."""

    def __init__(self, cseq, dim=0):
        assert all(isinstance(c, Constraint) for c in cseq)
        self.cseq = list(cseq)
        self.dim = dim
        super().__init__()

    @property
    def is_discrete(self) -> bool:  # type: ignore[override]
        return any(c.is_discrete for c in self.cseq)

    @property
    def event_dim(self) -> int:  # type: ignore[override]
        dim = max(c.event_dim for c in self.cseq)
        if self.dim + dim < 0:
            dim += 1
        return dim

    def check(self, value):
        assert -value.dim() <= self.dim < value.dim()
        vs = [
            value.select(self.dim, i)
            if hasattr(value, "select")
            else value.narrow(self.dim, i, 1).squeeze(self.dim)
            for i in range(value.size(self.dim))
        ]
        return ember.stack([c.check(v) for v, c in zip(vs, self.cseq)], self.dim)
