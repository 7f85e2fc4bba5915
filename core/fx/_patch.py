"""Temporary patches applied while tracing, and ``wrap``.

Why patching: ember's op functions are plain Python over arrays (no ``__torch_function__``
dispatch), and adding a proxy check to every op would tax the hot path of every eager call and
touch hundreds of files. Instead, for the duration of a trace only, the public functions of
ember's namespaces (``ember``, ``ember.nn.functional``, ``ember.linalg``, ``ember.fft``,
``ember.special``), the same functions where a traced ``forward``'s module imported them by
name, and functions registered with :func:`wrap` are replaced by wrappers that record a
``call_function`` node whose target is the *original* callable when any argument is a Proxy, and
call the original otherwise. Every patch is undone when the trace ends, even on error.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from typing import Any

from ._names import NAMESPACES, namespace_functions, register_name
from .node import map_aggregate
from .proxy import Proxy

__all__ = ["wrap"]

_MISSING = object()
# (globals dict, name) pairs registered by ``wrap``
_wrapped_fns_to_patch: list[tuple[dict, str]] = []
_wrappers: dict[int, Callable] = {}  # id(original) -> its tracing wrapper
_originals: dict[int, Callable] = {}  # id(wrapper) -> original


def _find_proxy(args: tuple, kwargs: dict) -> Proxy | None:
    found: list[Proxy] = []

    def look(a: Any) -> Any:
        if not found and isinstance(a, Proxy):
            found.append(a)
        return a

    map_aggregate(args, look)
    if not found:
        map_aggregate(kwargs, look)
    return found[0] if found else None


def tracing_wrapper(orig: Callable) -> Callable:
    """The wrapper recording ``orig`` as a call_function when a Proxy is among its arguments."""
    w = _wrappers.get(id(orig))
    if w is None:

        @functools.wraps(orig)
        def w(*args, **kwargs):
            proxy = _find_proxy(args, kwargs)
            # functions marked _traces_itself record their own ops (ember.cond)
            if proxy is None or getattr(orig, "_traces_itself", False):
                return orig(*args, **kwargs)
            return proxy.tracer.create_proxy("call_function", orig, args, kwargs)

        _wrappers[id(orig)] = w
        _originals[id(w)] = orig
    return w


def wrap(fn_or_name: str | Callable) -> str | Callable:
    """Record calls to a module-level function as graph leaves instead of tracing through it.

    Call it at the top level of the module that defines or imports the function::

        def my_custom_function(x, y):
            return x * x + y * y

        ember.fx.wrap("my_custom_function")
    """
    frame = inspect.currentframe().f_back
    if frame.f_code.co_name != "<module>":
        raise NotImplementedError("wrap must be called at the top level of a module")
    if callable(fn_or_name):
        name = fn_or_name.__name__
    elif isinstance(fn_or_name, str):
        name = fn_or_name
    else:
        raise TypeError(f"wrap: expected a function or its name, got {type(fn_or_name).__name__}")
    _wrapped_fns_to_patch.append((frame.f_globals, name))
    return fn_or_name


class Patcher:
    """Collects setattr/dict patches and undoes them in reverse order."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self._visited_globals: set[int] = set()
        self._visited_objects: dict[int, Any] = {}

    def __enter__(self) -> Patcher:
        return self

    def __exit__(self, *exc) -> None:
        while self._undo:
            self._undo.pop()()

    def first_visit(self, obj: Any) -> bool:
        """True the first time ``obj`` is seen by this patcher (patch each object once)."""
        if id(obj) in self._visited_objects:
            return False
        self._visited_objects[id(obj)] = obj  # held, so the id is not reused meanwhile
        return True

    def set_attr(self, obj: Any, name: str, value: Any) -> None:
        old = obj.__dict__.get(name, _MISSING) if hasattr(obj, "__dict__") else _MISSING
        setattr(obj, name, value)
        if old is _MISSING:
            self._undo.append(lambda: delattr(obj, name))
        else:
            self._undo.append(lambda: setattr(obj, name, old))

    def set_item(self, d: dict, key: str, value: Any) -> None:
        old = d.get(key, _MISSING)
        d[key] = value
        self._undo.append(lambda: d.pop(key) if old is _MISSING else d.__setitem__(key, old))

    def autowrap_globals(self, fn_globals: dict, ids: set[int]) -> None:
        """Replace names in ``fn_globals`` bound to functions in ``ids`` by their wrappers."""
        if id(fn_globals) in self._visited_globals:
            return
        self._visited_globals.add(id(fn_globals))
        for name, value in list(fn_globals.items()):
            if callable(value) and id(value) in ids and not name.startswith("__"):
                self.set_item(fn_globals, name, tracing_wrapper(value))


_namespace_cache: list[tuple[str, str, Callable]] | None = None


def _namespace_entries() -> list[tuple[str, str, Callable]]:
    global _namespace_cache
    if _namespace_cache is None:
        entries = []
        for modname in NAMESPACES:
            for name, fn in namespace_functions(modname).items():
                register_name(fn, f"{modname}.{name}")
                entries.append((modname, name, fn))
        _namespace_cache = entries
    return _namespace_cache


def autowrap_ids(modules: tuple, functions: tuple) -> set[int]:
    """ids of every function the tracer records as a leaf when it meets a Proxy."""
    entries = _namespace_entries()
    ids = {id(fn) for _, _, fn in entries}
    # modules that import an op by name (``from ..ops.shape import stack``) hold the function
    # under its out= wrapper (core/_out_arg.py): record that one as a leaf too
    ids.update(
        id(fn._ember_out_wrapped) for _, _, fn in entries if hasattr(fn, "_ember_out_wrapped")
    )
    for mod in modules:
        for name in dir(mod):
            fn = getattr(mod, name)
            if callable(fn) and not name.startswith("_") and not isinstance(fn, type):
                ids.add(id(fn))
    ids.update(id(f) for f in functions)
    return ids


def patch_namespaces(patcher: Patcher) -> None:
    import importlib

    mods = {m: importlib.import_module(m) for m in NAMESPACES}
    for modname, name, fn in _namespace_entries():
        patcher.set_attr(mods[modname], name, tracing_wrapper(fn))


def patch_wrapped(patcher: Patcher) -> None:
    for fn_globals, name in _wrapped_fns_to_patch:
        if name in fn_globals and callable(fn_globals[name]):
            patcher.set_item(fn_globals, name, tracing_wrapper(fn_globals[name]))
        elif name in ("len", "getattr", "abs", "max", "min", "sum") or hasattr(math, name):
            import builtins

            orig = getattr(builtins, name, None) or getattr(math, name)
            patcher.set_item(fn_globals, name, tracing_wrapper(orig))
