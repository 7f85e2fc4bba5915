"""``ember.compiler`` (torch.compiler): reset, disable, is_compiling, allow_in_graph,
set_stance, save_cache_artifacts / load_cache_artifacts."""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
import logging
from collections.abc import Callable
from typing import Any

__all__ = [
    "allow_in_graph",
    "disable",
    "is_compiling",
    "is_dynamo_compiling",
    "load_cache_artifacts",
    "reset",
    "save_cache_artifacts",
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
    Changing the stance inside a compiled region raises ``AssertionError`` ("Attempt to trace
    forbidden callable"), as torch does.
    """

    def __init__(
        self,
        stance: str = "default",
        *,
        skip_guard_eval_unsafe: bool = False,
        force_backend: Any = None,
    ) -> None:
        from ember._compile import _stance
        from ember._compile._capture import ForbiddenCallable

        if is_compiling():  # torch: an AssertionError that ends the compile (no graph break)
            raise ForbiddenCallable(set_stance)
        if force_backend is not None:
            raise NotImplementedError(
                "set_stance: force_backend is not supported by ember.compile (one backend)"
            )
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
        stance = self.stance

        @functools.wraps(fn)
        def with_stance(*args: Any, **kwargs: Any) -> Any:
            from ember._compile._capture import ForbiddenCallable

            if is_compiling():
                raise ForbiddenCallable(fn)
            prev = _stance.swap(stance)
            try:
                return fn(*args, **kwargs)
            finally:
                _stance.swap(prev)

        return with_stance


# ---- compile caching (torch.compiler.save_cache_artifacts / load_cache_artifacts) -----------
# ember keeps no compiled code to carry between processes: a capture is a Python trace plus
# generated Python (milliseconds to tens of milliseconds per graph, and one per module class
# under regional compilation), so there is nothing to restore. The artifacts name what this
# process compiled; loading them checks the format and restores nothing. The TORCHINDUCTOR_*
# cache variables have no effect for the same reason.
_CACHE_MAGIC = b"ember-compile-cache/1\n"


@dataclasses.dataclass
class CacheInfo:
    """What a cache blob holds (torch.compiler._cache.CacheInfo): ``artifacts["ember"]`` lists
    the compiled functions and modules by name."""

    artifacts: dict[str, list[str]] = dataclasses.field(
        default_factory=lambda: collections.defaultdict(list)
    )


def save_cache_artifacts() -> tuple[bytes, CacheInfo] | None:
    """``(bytes, CacheInfo)`` naming what this process compiled, or ``None`` when nothing was
    (torch's return values; see the note above on what ember keeps)."""
    from ember._compile._frame import _REGISTRY

    names = sorted(cf._name() for cf in list(_REGISTRY) if cf.entries)
    if not names:
        return None
    info = CacheInfo()
    info.artifacts["ember"] = names
    return _CACHE_MAGIC + json.dumps({"ember": names}).encode(), info


def load_cache_artifacts(serialized_artifacts: bytes) -> CacheInfo | None:
    """Read a blob from :func:`save_cache_artifacts`: its ``CacheInfo``, or ``None`` (with a
    warning in the log, as torch) when the bytes are not one."""
    if not isinstance(serialized_artifacts, (bytes, bytearray)):
        raise TypeError(
            "load_cache_artifacts: expected bytes, got " + type(serialized_artifacts).__name__
        )
    data = bytes(serialized_artifacts)
    try:
        if not data.startswith(_CACHE_MAGIC):
            raise ValueError("not an ember compile-cache blob")
        names = json.loads(data[len(_CACHE_MAGIC) :])["ember"]
    except (ValueError, KeyError, TypeError) as e:
        logging.getLogger("ember.compiler").warning("Failed to read cache artifacts: %s", e)
        return None
    info = CacheInfo()
    info.artifacts["ember"] = list(names)
    return info
