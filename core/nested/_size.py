"""The sizes and the placeholder ``_data`` of nested tensors: :class:`NestedInt`, the size of
a ragged dimension, and :class:`_NestedData`, the logical shape and dtype without elements."""

from __future__ import annotations

import itertools
import weakref

from ..tensor import Tensor

_counter = itertools.count(1)


def unsupported(what: str) -> NotImplementedError:
    return NotImplementedError(f"{what} is not supported for nested tensors (ember.nested)")


class NestedInt:
    """The size of a ragged dimension: ``j1``, ``j2``, ... One object per offsets tensor, so
    two nested tensors have equal shapes exactly when they share their offsets."""

    __slots__ = ("_id", "__weakref__")

    def __init__(self) -> None:
        self._id = next(_counter)

    def __repr__(self) -> str:
        return f"j{self._id}"

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return other is self

    def __ne__(self, other) -> bool:
        return other is not self

    def __hash__(self) -> int:
        return hash(("NestedInt", self._id))

    def __int__(self) -> int:
        raise RuntimeError(
            f"the ragged dimension {self} of a nested tensor has no single size; use "
            "nt.offsets() / nt.lengths() for the per-component sizes"
        )

    __index__ = __int__


# one NestedInt per offsets tensor (by identity), as PyTorch's nested ints
_sizes: dict[int, NestedInt] = {}


def nested_int_for(offsets: Tensor) -> NestedInt:
    key = id(offsets)
    j = _sizes.get(key)
    if j is None:
        j = _sizes[key] = NestedInt()
        weakref.finalize(offsets, _sizes.pop, key, None)
    return j


class _MissingArrayAttribute(NotImplementedError, AttributeError):
    """An array attribute the placeholder lacks: NotImplementedError for the user,
    AttributeError for ``hasattr`` probes in ember's own code."""


class _NestedData:
    """The ``_data`` of a nested tensor: its logical shape and dtype, no elements."""

    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype) -> None:
        self.shape = tuple(shape)
        self.dtype = dtype

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        raise unsupported(f"the operation {ufunc.__name__!r}")

    def __array_function__(self, func, types, args, kwargs):
        raise unsupported(f"the operation {func.__name__!r}")

    def __array__(self, dtype=None, copy=None):
        raise unsupported("conversion to a NumPy array")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    def __getattr__(self, name):
        raise _MissingArrayAttribute(
            f"array attribute {name!r} is not supported for nested tensors; use "
            "nt.values() or nt.unbind()"
        )
