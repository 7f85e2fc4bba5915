"""The rest of ``torch.jit``'s public names, with the meaning they have outside a compiled
program: type markers (``Final``, ``Attribute``, ``annotate``, ``interface``), ``fork`` /
``wait``, the typed ``isinstance``, and the fusion settings, which have nothing to tune in
ember (its compiler is ``ember.compile``).

Model libraries written for TorchScript use these at class-definition time (``fused_attn:
torch.jit.Final[bool]``) or in code that also runs eagerly, so a program stops at the first one
missing even when it never scripts anything.
"""

from __future__ import annotations

import builtins
import collections.abc
import contextlib
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ..futures import Future

__all__ = [
    "Attribute",
    "Error",
    "Final",
    "Future",
    "ScriptWarning",
    "annotate",
    "fork",
    "fuser",
    "interface",
    "isinstance",
    "optimized_execution",
    "script_if_tracing",
    "set_fusion_strategy",
    "strict_fusion",
    "wait",
]

T = TypeVar("T")

_builtin_isinstance = builtins.isinstance  # this module defines its own ``isinstance``

# ``Final[bool]`` marks a module attribute as a constant for the script compiler; eagerly it is
# ``typing.Final``, as torch's is.
Final = typing.Final


class Error(RuntimeError):
    """Raised by TorchScript programs (``torch.jit.Error``); a ``RuntimeError``."""


class ScriptWarning(Warning):
    """Warnings about scripting (``torch.jit.ScriptWarning``)."""


def Attribute(value: T, type: Any = None) -> T:  # noqa: N802 - torch's name
    """Declare a module attribute's type for the script compiler; eagerly returns ``value``."""
    return value


def annotate(the_type: Any, the_value: T) -> T:
    """Give ``the_value`` a static type for the script compiler; eagerly returns it."""
    return the_value


def interface(obj: type) -> type:
    """Mark a class as a TorchScript interface; eagerly the class is returned unchanged."""
    if not _builtin_isinstance(obj, type):
        raise TypeError(f"ember.jit.interface decorates a class, got {type(obj).__name__}")
    return obj


def script_if_tracing(fn: Callable) -> Callable:
    """Script ``fn`` only when it is called while tracing; eager calls run it as written (as
    torch's, which compiles it on its first call under a tracer)."""
    return fn


def _overload(func: Callable) -> Callable:
    """Declare one typed signature of an overloaded function for the script compiler (the
    undecorated definition after the declarations is the implementation); eagerly the
    declaration is returned and the later definition replaces it, as in torch."""
    return func


_overload_method = _overload


def fork(func: Callable, *args: Any, **kwargs: Any) -> Future:
    """Run ``func(*args, **kwargs)`` and return a completed ``Future`` holding its result (or
    its exception), as ``torch.jit.fork`` does outside a scripted program."""
    fut: Future = Future()
    try:
        fut.set_result(func(*args, **kwargs))
    except Exception as exc:  # delivered by wait(), as torch's future does
        fut.set_exception(exc)
    return fut


def wait(future: Future) -> Any:
    """The result of a ``fork``: ``future.wait()``."""
    if not _builtin_isinstance(future, Future):
        raise TypeError(f"ember.jit.wait expects a Future, got {type(future).__name__}")
    return future.wait()


def _matches(obj: Any, target: Any) -> bool:
    origin = typing.get_origin(target)
    if target is Any:
        return True
    if target is None or target is type(None):
        return obj is None
    if origin is None:
        return _builtin_isinstance(obj, target)
    args = typing.get_args(target)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(obj, a) for a in args)
    if origin is list:
        return _builtin_isinstance(obj, list) and all(_matches(v, args[0]) for v in obj)
    if origin is dict:
        return _builtin_isinstance(obj, dict) and all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in obj.items()
        )
    if origin is tuple:
        if not _builtin_isinstance(obj, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(v, args[0]) for v in obj)
        return len(obj) == len(args) and all(_matches(v, a) for v, a in zip(obj, args))
    if origin in (collections.abc.Sequence, collections.abc.Iterable):
        return _builtin_isinstance(obj, origin)
    return _builtin_isinstance(obj, origin)


def isinstance(obj: Any, target_type: Any) -> bool:  # noqa: A001 - torch's name
    """``isinstance`` that also checks typed containers: ``List[int]``, ``Dict[str, Tensor]``,
    ``Tuple[int, str]``, ``Optional[T]`` (every element is checked, as torch does eagerly)."""
    return _matches(obj, target_type)


# ---- fusion settings: ember's compiler has no TorchScript fusers to choose among ----------
_fusion_strategy: list = [[("STATIC", 2), ("DYNAMIC", 10)]]


def set_fusion_strategy(strategy: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Record the fusion strategy (``[("STATIC", n), ("DYNAMIC", m)]``) and return the old one;
    it has no effect on ember's compiler."""
    for item in strategy:
        if (
            not _builtin_isinstance(item, tuple)
            or len(item) != 2
            or item[0] not in ("STATIC", "DYNAMIC")
            or not _builtin_isinstance(item[1], int)
        ):
            raise ValueError(
                f'set_fusion_strategy expects ("STATIC" | "DYNAMIC", int) pairs, got {item!r}'
            )
    old, _fusion_strategy[0] = _fusion_strategy[0], list(strategy)
    return old


@contextlib.contextmanager
def fuser(name: str) -> Iterator[None]:
    """Choose a TorchScript fuser (``"fuser0"``, ``"fuser1"``, ``"fuser2"``, ``"none"``) for the
    block; accepted and ignored (ember's compiler fuses by itself)."""
    if name not in ("fuser0", "fuser1", "fuser2", "fuser3", "none"):
        raise ValueError(f"unrecognized fuser option {name!r}")
    yield


@contextlib.contextmanager
def optimized_execution(should_optimize: bool) -> Iterator[None]:
    """Turn TorchScript's graph optimizations on or off for the block; nothing to switch."""
    yield


class strict_fusion:  # noqa: N801 - torch's name
    """Inside a scripted function, asks that everything fuse; outside one, a no-op context."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None
