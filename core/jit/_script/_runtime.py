"""Run-time helpers that scripted graphs call (resolvable by name from a saved graph)."""

from __future__ import annotations

from typing import Any

__all__ = ["script_assert", "raise_exception", "unused_called", "length", "to_int", "to_float",
           "to_bool"]

_KINDS = {"ValueError": ValueError, "TypeError": TypeError, "IndexError": IndexError,
          "KeyError": KeyError, "AssertionError": AssertionError,
          "NotImplementedError": NotImplementedError}


def script_assert(condition: Any, message: str = "") -> None:
    """``assert condition, message`` inside a scripted function."""
    if not bool(condition):
        raise AssertionError(message)


def raise_exception(kind: str, message: str = "") -> None:
    """``raise Kind(message)`` inside a scripted function (other kinds raise RuntimeError)."""
    raise _KINDS.get(kind, RuntimeError)(message or kind)


def unused_called(name: str) -> None:
    """The body of a function marked ``@ember.jit.unused``: reaching it is an error."""
    raise RuntimeError(f"{name} was marked @ember.jit.unused and was not compiled; a scripted "
                       "model cannot run it")


def length(x: Any) -> int:
    """``len(x)`` of a run-time value (a tensor's first dimension, a shape's length)."""
    return len(x)


def to_int(x: Any) -> int:
    """``int(x)`` of a run-time value."""
    return int(x)


def to_float(x: Any) -> float:
    """``float(x)`` of a run-time value."""
    return float(x)


def to_bool(x: Any) -> bool:
    """``bool(x)`` of a run-time value."""
    return bool(x)


SAFE = (script_assert, raise_exception, unused_called, length, to_int, to_float, to_bool)
