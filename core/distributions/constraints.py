"""Constraints: objects that say where a parameter or a sample may lie
(``torch.distributions.constraints``).

The base class, dependent / independent wrappers and the scalar (bounded, integer, boolean)
constraints are here; the vector and matrix constraints and the ``cat`` / ``stack``
combinators are in ``_constraints_structured.py``. The public instances are all built here.
"""

from __future__ import annotations

__all__ = [
    "Constraint",
    "boolean",
    "cat",
    "corr_cholesky",
    "dependent",
    "dependent_property",
    "greater_than",
    "greater_than_eq",
    "independent",
    "integer_interval",
    "interval",
    "half_open_interval",
    "is_dependent",
    "less_than",
    "lower_cholesky",
    "lower_triangular",
    "MixtureSameFamilyConstraint",
    "multinomial",
    "nonnegative",
    "nonnegative_integer",
    "one_hot",
    "positive",
    "positive_semidefinite",
    "positive_definite",
    "positive_integer",
    "real",
    "real_vector",
    "simplex",
    "square",
    "stack",
    "symmetric",
    "unit_interval",
]


class Constraint:
    """A region over which a variable is valid. ``check(value)`` returns a bool tensor of shape
    ``sample_shape + batch_shape`` saying where ``value`` satisfies the constraint."""

    is_discrete = False  # Default to continuous.
    event_dim = 0  # Default to univariate.

    def check(self, value):
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.__class__.__name__[1:] + "()"


class _Dependent(Constraint):
    """Placeholder for variables whose support depends on other variables (no check)."""

    def __init__(self, *, is_discrete=NotImplemented, event_dim=NotImplemented):
        self._is_discrete = is_discrete
        self._event_dim = event_dim
        super().__init__()

    @property
    def is_discrete(self) -> bool:  # type: ignore[override]
        if self._is_discrete is NotImplemented:
            raise NotImplementedError(".is_discrete cannot be determined statically")
        return self._is_discrete

    @property
    def event_dim(self) -> int:  # type: ignore[override]
        if self._event_dim is NotImplemented:
            raise NotImplementedError(".event_dim cannot be determined statically")
        return self._event_dim

    def __call__(self, *, is_discrete=NotImplemented, event_dim=NotImplemented):
        if is_discrete is NotImplemented:
            is_discrete = self._is_discrete
        if event_dim is NotImplemented:
            event_dim = self._event_dim
        return _Dependent(is_discrete=is_discrete, event_dim=event_dim)

    def check(self, x):
        raise ValueError("Cannot determine validity of dependent constraint")


def is_dependent(constraint) -> bool:
    """Whether ``constraint`` is a ``_Dependent`` placeholder."""
    return isinstance(constraint, _Dependent)


class _DependentProperty(property, _Dependent):
    """A property that is also a dependent constraint (used for ``support`` that depends on
    parameters)."""

    def __init__(self, fn=None, *, is_discrete=NotImplemented, event_dim=NotImplemented):
        property.__init__(self, fn)
        _Dependent.__init__(self, is_discrete=is_discrete, event_dim=event_dim)

    def __call__(self, fn):  # type: ignore[override]
        return _DependentProperty(fn, is_discrete=self._is_discrete, event_dim=self._event_dim)


class _IndependentConstraint(Constraint):
    """Wraps a constraint and treats its ``reinterpreted_batch_ndims`` rightmost batch dims as
    event dims."""

    def __init__(self, base_constraint, reinterpreted_batch_ndims):
        assert isinstance(base_constraint, Constraint)
        assert isinstance(reinterpreted_batch_ndims, int)
        assert reinterpreted_batch_ndims >= 0
        self.base_constraint = base_constraint
        self.reinterpreted_batch_ndims = reinterpreted_batch_ndims
        super().__init__()

    @property
    def is_discrete(self) -> bool:  # type: ignore[override]
        return self.base_constraint.is_discrete

    @property
    def event_dim(self) -> int:  # type: ignore[override]
        return self.base_constraint.event_dim + self.reinterpreted_batch_ndims

    def check(self, value):
        result = self.base_constraint.check(value)
        if result.dim() < self.reinterpreted_batch_ndims:
            expected = self.base_constraint.event_dim + self.reinterpreted_batch_ndims
            raise ValueError(f"Expected value.dim() >= {expected} but got {value.dim()}")
        if self.reinterpreted_batch_ndims:
            result = result.reshape(
                *result.shape[: result.dim() - self.reinterpreted_batch_ndims], -1
            ).all(-1)
        return result

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__[1:]}({repr(self.base_constraint)}, "
            f"{self.reinterpreted_batch_ndims})"
        )


class MixtureSameFamilyConstraint(Constraint):
    """The support of a mixture: the component constraint, checked over the component dim."""

    def __init__(self, base_constraint):
        assert isinstance(base_constraint, Constraint)
        self.base_constraint = base_constraint
        super().__init__()

    @property
    def is_discrete(self) -> bool:  # type: ignore[override]
        return self.base_constraint.is_discrete

    @property
    def event_dim(self) -> int:  # type: ignore[override]
        return self.base_constraint.event_dim

    def check(self, value):
        unsqueezed = value.unsqueeze(-1 - self.event_dim)
        result = self.base_constraint.check(unsqueezed)
        if value.dim() < self.event_dim:
            raise ValueError(f"Expected value.dim() >= {self.event_dim} but got {value.dim()}")
        num_dim_to_keep = value.dim() - self.event_dim
        return result.reshape(*result.shape[:num_dim_to_keep], -1).all(-1)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({repr(self.base_constraint)})"


class _Boolean(Constraint):
    is_discrete = True

    def check(self, value):
        return (value == 0) | (value == 1)


class _OneHot(Constraint):
    is_discrete = True
    event_dim = 1

    def check(self, value):
        is_boolean = (value == 0) | (value == 1)
        is_normalized = value.sum(-1).eq(1)
        return is_boolean.all(-1) & is_normalized


class _Bounded(Constraint):
    """A constraint with a ``lower_bound`` and/or ``upper_bound``, which its repr names."""

    def __repr__(self) -> str:
        args = ", ".join(
            f"{name}={self.__dict__[name]}"
            for name in ("lower_bound", "upper_bound")
            if name in self.__dict__
        )
        return f"{self.__class__.__name__[1:]}({args})"


class _LowerBounded(_Bounded):
    def __init__(self, lower_bound):
        self.lower_bound = lower_bound
        super().__init__()


class _UpperBounded(_Bounded):
    def __init__(self, upper_bound):
        self.upper_bound = upper_bound
        super().__init__()


class _BothBounded(_Bounded):
    def __init__(self, lower_bound, upper_bound):
        self.lower_bound = lower_bound
        self.upper_bound = upper_bound
        super().__init__()


class _IntegerInterval(_BothBounded):
    """Integers in ``[lower_bound, upper_bound]``:
    ``integer_interval(lower_bound, upper_bound)``."""

    is_discrete = True

    def check(self, value):
        return (value % 1 == 0) & (self.lower_bound <= value) & (value <= self.upper_bound)


class _IntegerLessThan(_UpperBounded):
    is_discrete = True

    def check(self, value):
        return (value % 1 == 0) & (value <= self.upper_bound)


class _IntegerGreaterThan(_LowerBounded):
    is_discrete = True

    def check(self, value):
        return (value % 1 == 0) & (value >= self.lower_bound)


class _Real(Constraint):
    def check(self, value):
        return value == value  # False for NaN


class _GreaterThan(_LowerBounded):
    """Reals greater than ``lower_bound``: ``greater_than(lower_bound)``."""

    def check(self, value):
        return self.lower_bound < value


class _GreaterThanEq(_LowerBounded):
    """Reals greater than or equal to ``lower_bound``: ``greater_than_eq(lower_bound)``."""

    def check(self, value):
        return self.lower_bound <= value


class _LessThan(_UpperBounded):
    """Reals less than ``upper_bound``: ``less_than(upper_bound)``."""

    def check(self, value):
        return value < self.upper_bound


class _Interval(_BothBounded):
    """Reals in ``[lower_bound, upper_bound]``: ``interval(lower_bound, upper_bound)``."""

    def check(self, value):
        return (self.lower_bound <= value) & (value <= self.upper_bound)


class _HalfOpenInterval(_BothBounded):
    """Reals in ``[lower_bound, upper_bound)``: ``half_open_interval(lower_bound, upper_bound)``."""

    def check(self, value):
        return (self.lower_bound <= value) & (value < self.upper_bound)


# Vector and matrix constraints and the combinators (_constraints_structured.py): imported
# here, after Constraint exists, for the public instances below; re-exported by name.
from ._constraints_structured import (  # noqa: E402
    _bool_tensor,  # noqa: F401
    _Cat,
    _CorrCholesky,
    _LowerCholesky,
    _LowerTriangular,
    _Multinomial,
    _PositiveDefinite,
    _PositiveSemidefinite,
    _raw,  # noqa: F401
    _Simplex,
    _Square,
    _Stack,
    _Symmetric,
    _xp,  # noqa: F401
)

# Public interface.
dependent = _Dependent()
dependent_property = _DependentProperty
independent = _IndependentConstraint
#: Values 0 or 1.
boolean = _Boolean()
#: Vectors (last dimension) of zeros with a single 1.
one_hot = _OneHot()
#: Integers >= 0.
nonnegative_integer = _IntegerGreaterThan(0)
#: Integers >= 1.
positive_integer = _IntegerGreaterThan(1)
integer_interval = _IntegerInterval
#: Any real number that is not NaN (infinities allowed).
real = _Real()
#: Vectors of reals (:data:`real` over the last dimension).
real_vector = independent(real, 1)
#: Reals > 0.
positive = _GreaterThan(0.0)
#: Reals >= 0.
nonnegative = _GreaterThanEq(0.0)
greater_than = _GreaterThan
greater_than_eq = _GreaterThanEq
less_than = _LessThan
multinomial = _Multinomial
#: Reals in [0, 1].
unit_interval = _Interval(0.0, 1.0)
interval = _Interval
half_open_interval = _HalfOpenInterval
#: Vectors (last dimension) of non-negative entries summing to 1.
simplex = _Simplex()
#: Lower-triangular square matrices.
lower_triangular = _LowerTriangular()
#: Lower-triangular matrices with a positive diagonal.
lower_cholesky = _LowerCholesky()
#: Cholesky factors of correlation matrices: lower-triangular, positive diagonal, rows of
#: unit norm.
corr_cholesky = _CorrCholesky()
#: Square matrices.
square = _Square()
#: Symmetric square matrices.
symmetric = _Symmetric()
#: Symmetric positive semi-definite matrices.
positive_semidefinite = _PositiveSemidefinite()
#: Symmetric positive-definite matrices.
positive_definite = _PositiveDefinite()
cat = _Cat
stack = _Stack
