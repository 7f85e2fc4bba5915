"""Compile-time values of the script compiler: pytree helpers, markers, errors.

A value the compiler holds is a Python constant (known while compiling: ints, module
attributes, submodules), an fx ``Proxy`` (known only when the graph runs) or a tuple / list /
dict of those. These helpers copy, flatten and merge such values.
"""

from __future__ import annotations

from typing import Any

from ember.fx.proxy import Proxy

__all__ = [
    "ScriptCompileError",
    "RunTimeValueError",
    "Undefined",
    "NORETURN",
    "is_dynamic",
    "copy_value",
    "flatten",
    "unflatten",
    "same_spec",
]


class ScriptCompileError(RuntimeError):
    """What ``ember.jit.script`` cannot compile; the message names the file and line."""


class RunTimeValueError(ScriptCompileError):
    """What a graph cannot hold because it depends on tensor values (TorchScript runs it:
    a scripted function hitting it runs as Python instead)."""


class Undefined:
    """A name that is not bound on every path (reading it raises, naming why)."""

    def __init__(self, why: str) -> None:
        self.why = why


class _NoReturn:
    """The result of a branch that always raises: it merges with anything."""

    def __repr__(self) -> str:
        return "NORETURN"


NORETURN = _NoReturn()


def is_dynamic(v: Any) -> bool:
    """True when ``v`` is (or holds) a value only known when the graph runs."""
    if isinstance(v, Proxy):
        return True
    if isinstance(v, (list, tuple)):
        return any(is_dynamic(e) for e in v)
    if isinstance(v, dict):
        return any(is_dynamic(e) for e in v.values())
    return False


def copy_value(v: Any) -> Any:
    """Copy the containers of ``v`` (not the tensors), so a branch cannot mutate its parent's."""
    if isinstance(v, list):
        return [copy_value(e) for e in v]
    if isinstance(v, dict):
        return {k: copy_value(e) for k, e in v.items()}
    if isinstance(v, tuple) and not hasattr(v, "_fields"):
        return tuple(copy_value(e) for e in v)
    return v


def _is_leaf(v: Any) -> bool:
    from ember import Tensor

    return (
        isinstance(v, (Proxy, Tensor))
        or (isinstance(v, (int, float)) and not isinstance(v, bool))
        or isinstance(v, bool)
    )


_LEAF = "leaf"


def flatten(v: Any, leaves: list) -> Any:
    """The structure of ``v`` (a spec) with its tensors / proxies / numbers put in ``leaves``."""
    if _is_leaf(v):
        leaves.append(v)
        return _LEAF
    if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
        return (type(v), [flatten(e, leaves) for e in v])
    if isinstance(v, dict):
        return (dict, list(v), [flatten(e, leaves) for e in v.values()])
    return ("const", v)


def unflatten(spec: Any, leaves: list) -> Any:
    it = iter(leaves)

    def build(s):
        if s == _LEAF:
            return next(it)
        if s[0] == "const":
            return s[1]
        if s[0] is dict:
            return {k: build(e) for k, e in zip(s[1], s[2])}
        return s[0](build(e) for e in s[1])

    return build(spec)


def same_spec(a: Any, b: Any) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return a == b
    if a[0] == "const" or b[0] == "const":
        return a[0] == b[0] and (a[1] is b[1] or _const_eq(a[1], b[1]))
    if a[0] is dict:
        return b[0] is dict and a[1] == b[1] and all(map(same_spec, a[2], b[2]))
    return a[0] is b[0] and len(a[1]) == len(b[1]) and all(map(same_spec, a[1], b[1]))


def _const_eq(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, (int, float, str, bool, type(None))):
        return a == b
    return a is b
