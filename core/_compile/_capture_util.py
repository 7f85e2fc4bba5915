"""Helpers of the compile capture (``_capture.py``) that need none of its state: the ember
classes' static function slots, recording wrappers, the modules a function closes over, and
signatures. Re-exported by ``_capture.py``, where the public ones keep their ``__module__``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ember.fx.tracer import Tracer


def _static_function_slots(ids: set[int]) -> list[tuple[type, str, Callable]]:
    from ember.nn import Module

    out = []
    for cls in _subclasses(Module):
        if not (cls.__module__ or "").startswith("ember."):
            continue
        for name, v in list(cls.__dict__.items()):
            if isinstance(v, staticmethod) and id(v.__func__) in ids:
                out.append((cls, name, v.__func__))
    return out


def _subclasses(cls: type) -> list[type]:
    out, todo = [], [cls]
    while todo:
        c = todo.pop()
        out.append(c)
        todo.extend(c.__subclasses__())
    return out


def _recording(tracer: Tracer, orig: Callable) -> Callable:
    def record(*args, **kwargs):
        return tracer.create_proxy("call_function", orig, args, kwargs)

    record.__name__ = orig.__name__
    return record


def closed_over_modules(fn: Callable) -> dict[str, Any]:
    """Modules a function reads from its globals or closure (``model`` in a train step)."""
    from ember.nn import Module

    found: dict[str, Any] = {}
    code = getattr(fn, "__code__", None)
    if code is None:
        return found
    glb = getattr(fn, "__globals__", {})
    for name in code.co_names:
        if isinstance(glb.get(name), Module):
            found[name] = glb[name]
    for name, cell in zip(code.co_freevars, getattr(fn, "__closure__", None) or ()):
        try:
            val = cell.cell_contents
        except ValueError:
            continue
        if isinstance(val, Module):
            found[name] = val
    return found


def _is_builtin_module(m: Any) -> bool:
    return (type(m).__module__ or "").startswith("ember.")


def _first_line(e: Exception) -> str:
    text = str(e) or type(e).__name__
    return text.splitlines()[0] if text else text


def signature_of(root: Any) -> inspect.Signature:
    from ember.nn import Module

    fn = type(root).forward if isinstance(root, Module) else root
    sig = inspect.signature(fn)
    if isinstance(root, Module):
        sig = sig.replace(parameters=list(sig.parameters.values())[1:])
    return sig


def _filled(cell) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:  # an empty cell (a name not yet bound)
        return False
    return True


for _fn in (closed_over_modules, signature_of):
    _fn.__module__ = "ember._compile._capture"
del _fn
