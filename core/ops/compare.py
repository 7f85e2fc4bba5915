"""Comparisons, logical and bitwise ops, and float classification: no gradients."""

from __future__ import annotations

from ..backend.device import get_array_module
from ..tensor import Tensor
from .function_free import binary_nograd, unary_nograd

eq = binary_nograd("equal")
ne = binary_nograd("not_equal")
lt = binary_nograd("less")
le = binary_nograd("less_equal")
gt = binary_nograd("greater")
ge = binary_nograd("greater_equal")
logical_and = binary_nograd("logical_and")
logical_or = binary_nograd("logical_or")
logical_xor = binary_nograd("logical_xor")
bitwise_and = binary_nograd("bitwise_and")
bitwise_or = binary_nograd("bitwise_or")
bitwise_xor = binary_nograd("bitwise_xor")
logical_not = unary_nograd("logical_not")
bitwise_not = unary_nograd("invert")
isnan = unary_nograd("isnan")
isinf = unary_nograd("isinf")
isfinite = unary_nograd("isfinite")

greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> Tensor:
    """Elementwise ``|input - other| <= atol + rtol * |other|``, a bool tensor.

    Args:
        input (Tensor): the first tensor.
        other (Tensor): the second tensor, broadcast against ``input``.
        rtol: the relative tolerance.
        atol: the absolute tolerance.
        equal_nan: count two NaNs as close.
    """
    xp = get_array_module(input._data)
    return Tensor._wrap(
        xp.isclose(input._data, other._data, rtol=rtol, atol=atol, equal_nan=equal_nan)
    )


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False) -> bool:
    """Whether every element of ``input`` is close to ``other``; see :func:`isclose`."""
    return bool(isclose(input, other, rtol, atol, equal_nan)._data.all())


def equal(input, other) -> bool:
    """True when both tensors have the same shape and elements."""
    return input._data.shape == other._data.shape and bool((input._data == other._data).all())
