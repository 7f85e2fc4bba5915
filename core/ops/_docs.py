"""Docstrings of the op functions that a generator makes (``exp = _unary(Exp, ...)``): the
generator passes a one-line summary and these helpers add the sections shared by the family, so
``help(ember.exp)`` and the API reference show a complete docstring."""

from __future__ import annotations

_FLOAT_NOTE = (
    "Integer and boolean inputs are computed in the default floating dtype "
    "(:func:`ember.get_default_dtype`), as in PyTorch."
)


def unary_doc(summary: str, *, floats: bool = True, grad: str = "") -> str:
    """The docstring of an elementwise function of one tensor.

    Args:
        summary: what the function computes, one sentence (math in plain text).
        floats: whether integer inputs are promoted to the default float dtype.
        grad: a sentence on the gradient, when it is not the plain derivative.
    """
    notes = " ".join(s for s in (_FLOAT_NOTE if floats else "", grad) if s)
    body = f"{summary}\n\n{notes}\n\n" if notes else f"{summary}\n\n"
    return (
        body + "Args:\n    input (Tensor): the input.\n\n"
        "Returns:\n    A new tensor with the input's shape."
    )


def polynomial_doc(title: str, shifted: bool) -> str:
    """The docstring of an orthogonal-polynomial function ``f(input, n)``."""
    where = " on [0, 1], P*(x) = P(2x - 1)" if shifted else ""
    return (
        f"The {'shifted ' if shifted else ''}{title} of degree ``n`` at ``input``{where}, "
        "computed by the three-term recurrence.\n\n"
        "``n`` is truncated to an integer; degree 0 gives 1. No gradient is recorded.\n\n"
        "Args:\n    input (Tensor or Number): the points x.\n"
        "    n (Tensor or Number): the degrees, broadcast against ``input``.\n\n"
        "Returns:\n    A floating tensor of the broadcast shape."
    )


# The comparison, logical and bitwise ops, by the NumPy ufunc that computes them:
# (summary, what they return).
_BOOL = "a bool tensor"
_NOGRAD = {
    "equal": ("Elementwise ``input == other``.", _BOOL),
    "not_equal": ("Elementwise ``input != other``.", _BOOL),
    "less": ("Elementwise ``input < other``.", _BOOL),
    "less_equal": ("Elementwise ``input <= other``.", _BOOL),
    "greater": ("Elementwise ``input > other``.", _BOOL),
    "greater_equal": ("Elementwise ``input >= other``.", _BOOL),
    "logical_and": ("Elementwise logical AND; non-zero values count as True.", _BOOL),
    "logical_or": ("Elementwise logical OR; non-zero values count as True.", _BOOL),
    "logical_xor": ("Elementwise logical XOR; non-zero values count as True.", _BOOL),
    "logical_not": ("Elementwise logical NOT; non-zero values count as True.", _BOOL),
    "bitwise_and": (
        "Elementwise bitwise AND of integer or bool tensors.",
        "an integer or bool tensor",
    ),
    "bitwise_or": (
        "Elementwise bitwise OR of integer or bool tensors.",
        "an integer or bool tensor",
    ),
    "bitwise_xor": (
        "Elementwise bitwise XOR of integer or bool tensors.",
        "an integer or bool tensor",
    ),
    "invert": (
        "Elementwise bitwise NOT of an integer or bool tensor.",
        "a tensor of the input's dtype",
    ),
    "left_shift": (
        "Shift the bits of each integer element left by ``other``.",
        "an integer tensor",
    ),
    "right_shift": (
        "Shift the bits of each integer element right by ``other``.",
        "an integer tensor",
    ),
    "isnan": ("Whether each element is NaN.", _BOOL),
    "isinf": ("Whether each element is positive or negative infinity.", _BOOL),
    "isfinite": ("Whether each element is finite (neither NaN nor infinite).", _BOOL),
    "signbit": ("Whether the sign bit of each element is set (True for -0.0).", _BOOL),
    "isposinf": ("Whether each element is positive infinity.", _BOOL),
    "isneginf": ("Whether each element is negative infinity.", _BOOL),
    "isreal": (
        "Whether each element has a zero imaginary part (always True for real dtypes).",
        _BOOL,
    ),
}


def nograd_doc(ufunc_name: str, *, binary: bool) -> str | None:
    """The docstring of the comparison, logical or bitwise op that the NumPy ufunc
    ``ufunc_name`` computes (no gradient is recorded); None for an op not in the table."""
    if ufunc_name not in _NOGRAD:
        return None
    summary, result = _NOGRAD[ufunc_name]
    args = (
        "    input (Tensor or Number): the first operand.\n"
        "    other (Tensor or Number): the second operand, broadcast against ``input``.\n"
        if binary
        else "    input (Tensor): the input.\n"
    )
    shape = "the broadcast shape" if binary else "the input's shape"
    return f"{summary}\n\nArgs:\n{args}\nReturns:\n    {result[0].upper()}{result[1:]} of {shape}."
