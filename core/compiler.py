"""``ember.compiler`` (torch.compiler): reset, disable, is_compiling, allow_in_graph."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = ["allow_in_graph", "disable", "is_compiling", "is_dynamo_compiling", "reset"]


def reset() -> None:
    """Drop every compiled graph of every ``ember.compile`` object; the next calls recompile."""
    from ember._compile._frame import reset_all

    reset_all()


def is_compiling() -> bool:
    """True while ember.compile is capturing a graph (code may take a trace-friendly path)."""
    from ember._compile._capture import is_compiling as _is

    return _is()


is_dynamo_compiling = is_compiling


def disable(
    fn: Callable | None = None, recursive: bool = True, *, reason: str | None = None
) -> Any:
    """Run ``fn`` eagerly: a compiled region calling it breaks its graph there.

    Given an ``ember.compile`` result, returns the original callable. Usable as
    ``@ember.compiler.disable`` or ``@ember.compiler.disable(reason=...)``.
    """
    if fn is None:
        return functools.partial(disable, recursive=recursive, reason=reason)
    from ember._compile import OptimizedModule
    from ember._compile._capture import GraphBreak, _user_line

    if isinstance(fn, OptimizedModule):
        return fn._orig_mod
    orig = getattr(fn, "_torchdynamo_orig_callable", None)
    if orig is not None:
        return orig
    if not callable(fn):
        raise TypeError(f"disable: expected a callable, got {type(fn).__name__}")
    name = getattr(fn, "__qualname__", repr(fn))

    @functools.wraps(fn)
    def eager_only(*args, **kwargs):
        if is_compiling():
            why = f" ({reason})" if reason else ""
            raise GraphBreak(f"call to {name}, marked ember.compiler.disable{why}", _user_line())
        return fn(*args, **kwargs)

    eager_only._ember_compile_disabled = True
    return eager_only


def allow_in_graph(fn: Callable) -> Callable:
    """Record calls to ``fn`` (a module-level function) as one graph node instead of tracing
    into it; at run time the node calls ``fn`` itself."""
    from ember._compile._capture import _allowed_in_graph

    if not callable(fn):
        raise TypeError(f"allow_in_graph: expected a callable, got {type(fn).__name__}")
    if fn not in _allowed_in_graph:
        _allowed_in_graph.append(fn)
    return fn
