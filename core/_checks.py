"""``torch._check`` and its family: assertions that PyTorch programs (and the
``torch.export`` tutorial) use to state facts about values, ``torch._check(b >= 3)``.

Eagerly each one raises its error type when the condition is False; ``message`` is a
zero-argument callable giving the text, as in PyTorch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

__all__ = [
    "_assert",
    "_assert_async",
    "_check",
    "_check_index",
    "_check_is_size",
    "_check_not_implemented",
    "_check_type",
    "_check_value",
    "_check_with",
]

_DEFAULT = (
    "Expected cond to be True, but got False. (Could this error message be improved? If so, "
    "please report an enhancement request to PyTorch.)"
)


def _check_with(error_type: type, cond, message: Callable[[], str] | None = None) -> None:
    """Raise ``error_type(message())`` unless ``cond`` is True (a bool, or a one-element bool
    tensor)."""
    from .tensor import Tensor

    if isinstance(cond, Tensor):
        cond = bool(cond.item())
    elif hasattr(cond, "tracer"):  # a traced value (fx/export): its own bool() says what fails
        cond = bool(cond)
    if not isinstance(cond, bool):
        raise TypeError(f"cond must be a bool, but got {type(cond)}")
    if cond:
        return
    if message is None:
        raise error_type(_DEFAULT)
    if not callable(message):
        raise TypeError("message must be a callable")
    raise error_type(str(message()))


def _check(cond, message: Callable[[], str] | None = None) -> None:
    """Raise RuntimeError unless ``cond`` holds."""
    _check_with(RuntimeError, cond, message)


def _check_index(cond, message: Callable[[], str] | None = None) -> None:
    """Raise IndexError unless ``cond`` holds."""
    _check_with(IndexError, cond, message)


def _check_value(cond, message: Callable[[], str] | None = None) -> None:
    """Raise ValueError unless ``cond`` holds."""
    _check_with(ValueError, cond, message)


def _check_type(cond, message: Callable[[], str] | None = None) -> None:
    """Raise TypeError unless ``cond`` holds."""
    _check_with(TypeError, cond, message)


def _check_not_implemented(cond, message: Callable[[], str] | None = None) -> None:
    """Raise NotImplementedError unless ``cond`` holds."""
    _check_with(NotImplementedError, cond, message)


def _check_is_size(i, message: Callable[[], str] | None = None, *, max=None) -> None:
    """``i`` is usable as a size: ``i >= 0`` (and ``i <= max`` when given)."""
    warnings.warn(
        "_check_is_size will be removed in a future PyTorch release along with "
        "guard_size_oblivious. Use _check(i >= 0) instead.",
        FutureWarning,
        stacklevel=2,
    )
    _check(int(i) >= 0, message)
    if max is not None:
        _check(int(i) <= max, message)


def _assert(condition, message: str) -> None:
    """``torch._assert``: a traceable ``assert condition, message`` (AssertionError)."""
    if type(condition) is not bool:
        from .overrides import _tensor_like, handle_torch_function

        if _tensor_like(condition):  # an fx Proxy: recorded, as torch's is
            return handle_torch_function(_assert, (condition,), condition, message)
    if not condition:
        raise AssertionError(message)


def _assert_async(cond, msg: str | None = None) -> None:
    """``torch._assert_async``: raise RuntimeError unless the one-element tensor ``cond`` is
    nonzero (PyTorch checks it on the device without a host sync; ember checks at once)."""
    from .tensor import Tensor

    if not isinstance(cond, Tensor):
        raise TypeError(f"_assert_async(): cond must be a Tensor, got {type(cond).__name__}")
    if cond.numel() == 0:
        raise RuntimeError("Boolean value of Tensor with no values is ambiguous")
    if cond.numel() > 1:
        raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
    if not bool(cond.item()):
        raise RuntimeError(msg or "Expected Tensor with single nonzero value, but got zero")
