"""``ignore`` / ``unused`` / ``export`` markers, and ``is_scripting`` / ``is_tracing``.

Markers set ``fn._ember_jit_modifier`` (``"ignore"``, ``"unused"``, ``"export"``, or
``"ignore_and_drop"`` for ``ignore(drop=True)``); ``ember.jit.script`` reads it. Tracing runs
the Python code as written, so markers do not change what ``trace`` records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["ignore", "unused", "export", "is_scripting", "is_tracing", "get_modifier"]

_state = {"tracing": 0, "scripting": 0}


def _mark(fn: Callable, how: str, api: str) -> Callable:
    if not callable(fn):
        raise TypeError(f"ember.jit.{api} decorates a function or method, got {type(fn).__name__}")
    target = fn.fget if isinstance(fn, property) else fn
    target._ember_jit_modifier = how
    return fn


def ignore(drop: bool | Callable = False, **kwargs: Any):
    """Leave a function as Python: ``script`` calls it instead of compiling it."""
    if callable(drop):
        return _mark(drop, "ignore", "ignore")
    if not isinstance(drop, bool):
        raise TypeError(f"ember.jit.ignore: drop must be a bool, got {type(drop).__name__}")

    def deco(fn):
        return _mark(fn, "ignore_and_drop" if drop else "ignore", "ignore")

    return deco


def unused(fn: Callable) -> Callable:
    """``script`` replaces the function with one that raises if it is ever called."""
    return _mark(fn, "unused", "unused")


def export(fn: Callable) -> Callable:
    """Compile this method too (besides ``forward``) when its module is scripted."""
    return _mark(fn, "export", "export")


def get_modifier(fn: Any) -> str | None:
    """The marker set on ``fn`` by the decorators above, or None."""
    return getattr(getattr(fn, "__func__", fn), "_ember_jit_modifier", None)


def is_scripting() -> bool:
    """True while ``ember.jit.script`` compiles (as torch.jit.is_scripting)."""
    return _state["scripting"] > 0


def is_tracing() -> bool:
    """True while ``ember.jit.trace`` runs the traced code."""
    return _state["tracing"] > 0
