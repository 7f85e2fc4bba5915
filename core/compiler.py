"""``ember.compiler`` (torch.compiler): reset, disable, is_compiling, allow_in_graph,
set_stance."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

__all__ = [
    "allow_in_graph",
    "disable",
    "is_compiling",
    "is_dynamo_compiling",
    "reset",
    "set_stance",
]


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


class set_stance:  # noqa: N801 -- torch's name; a function, context manager and decorator
    """Change how every ``ember.compile`` object behaves, without recompiling
    (torch.compiler.set_stance).

    Args:
        stance: ``"default"``; ``"force_eager"`` (run the original functions);
            ``"eager_on_recompile"`` (use compiled code that fits, run eagerly where a call would
            recompile); ``"fail_on_recompile"`` (raise where a call would recompile);
            ``"eager_then_compile"`` / ``"aot_eager_then_compile"`` (each compiled object runs
            its first call eagerly).
        skip_guard_eval_unsafe: accepted; ember always checks its guards.
        force_backend: not supported (ember has one compiler backend); must be ``None``.

    Called plainly it sets the stance until the next call; as a context manager it restores
    the previous stance on exit; as a decorator the stance holds while the function runs.
    Changing the stance inside a compiled region is a graph break there (torch raises).
    """

    def __init__(
        self,
        stance: str = "default",
        *,
        skip_guard_eval_unsafe: bool = False,
        force_backend: Any = None,
    ) -> None:
        from ember._compile import _stance
        from ember._compile._capture import GraphBreak, _user_line

        if force_backend is not None:
            raise NotImplementedError(
                "set_stance: force_backend is not supported by ember.compile (one backend)"
            )
        if is_compiling():
            raise GraphBreak("ember.compiler.set_stance inside a compiled region", _user_line())
        self.stance = stance
        self.skip_guard_eval_unsafe = skip_guard_eval_unsafe
        self.prev = _stance.swap(stance)

    def __enter__(self) -> set_stance:
        from ember._compile import _stance

        _stance.swap(self.stance)
        return self

    def __exit__(self, *exc: Any) -> None:
        from ember._compile import _stance

        _stance.swap(self.prev)

    def __call__(self, fn: Callable) -> Callable:
        from ember._compile import _stance

        if not callable(fn):
            raise TypeError(f"set_stance: expected a function to decorate, got {fn!r}")
        _stance.swap(self.prev)  # as a decorator it holds only while fn runs
        stance, name = self.stance, getattr(fn, "__qualname__", repr(fn))

        @functools.wraps(fn)
        def with_stance(*args: Any, **kwargs: Any) -> Any:
            from ember._compile._capture import GraphBreak, _user_line

            if is_compiling():
                raise GraphBreak(f"call to {name}, decorated with set_stance", _user_line())
            prev = _stance.swap(stance)
            try:
                return fn(*args, **kwargs)
            finally:
                _stance.swap(prev)

        return with_stance
