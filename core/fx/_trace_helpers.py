"""Module-level helpers of ``tracer.py``: argument recording, ``*args`` unpacking, the
user-frame locator for error messages and the Tensor-method wrapper used while tracing.

``Tracer`` itself (subclassed by export, compile, jit and users) stays in ``tracer.py``;
every name here is re-exported there.
"""

from __future__ import annotations

import inspect
import operator
from collections.abc import Callable
from typing import Any

from . import _patch
from .node import Node
from .proxy import Proxy, TraceError

_BASE_TYPES = (str, int, float, bool, complex, type(None), type(Ellipsis))


def _create_arg_basic(tracer, a: Any) -> Any:
    """Arguments -> node arguments: Proxies become their nodes, containers are mapped."""
    if isinstance(a, Proxy):
        if a.tracer is not tracer and getattr(a.tracer, "graph", None) is not tracer.graph:
            raise TraceError(f"{a} belongs to another trace")
        return a.node
    if isinstance(a, Node):
        return a
    if isinstance(a, tuple):
        t = tuple(tracer.create_arg(e) for e in a)
        return type(a)(*t) if hasattr(a, "_fields") else t
    if isinstance(a, list):
        return [tracer.create_arg(e) for e in a]
    if isinstance(a, dict):
        out = {}
        for k, v in a.items():
            if not isinstance(k, str):
                raise TraceError(f"dict keys in traced arguments must be str, got {k!r}")
            out[k] = tracer.create_arg(v)
        return out
    if isinstance(a, slice):
        return slice(
            tracer.create_arg(a.start), tracer.create_arg(a.stop), tracer.create_arg(a.step)
        )
    if isinstance(a, range):
        return range(a.start, a.stop, a.step)
    if isinstance(a, _BASE_TYPES):
        return a
    from ember.backend.device import device
    from ember.backend.dtype import dtype

    if isinstance(a, (dtype, device)):
        return a
    raise NotImplementedError(f"argument of type: {type(a).__name__} cannot be recorded in a graph")


def _unpack_varargs(fn: Callable) -> Callable:
    """``fn`` with its ``*args`` turned into one positional parameter, so the tracer can pass
    the single ``*args`` Proxy itself (``args[0]`` then records a getitem), as torch.fx does."""
    code = getattr(fn, "__code__", None)
    if code is None or not code.co_flags & inspect.CO_VARARGS:
        return fn
    import types

    new = code.replace(
        co_flags=code.co_flags & ~inspect.CO_VARARGS, co_argcount=code.co_argcount + 1
    )
    return types.FunctionType(new, fn.__globals__, fn.__name__, fn.__defaults__, fn.__closure__)


def _user_line(skip: str | tuple[str, ...] | None = None) -> str:
    """`` (at file:line: source)`` for the innermost frame outside the directories ``skip``
    (default: ember.fx), for errors; the other tracers (export, compile) pass their own."""
    frame = inspect.currentframe()
    here = __file__.rsplit("/", 1)[0] if skip is None else skip
    while frame is not None and frame.f_code.co_filename.startswith(here):
        frame = frame.f_back
    if frame is None:
        return ""
    info = inspect.getframeinfo(frame, context=1)
    src = info.code_context[0].strip() if info.code_context else ""
    return f" (at {info.filename}:{info.lineno}: {src})"


_REFLECTABLE = {
    "__add__",
    "__sub__",
    "__mul__",
    "__truediv__",
    "__floordiv__",
    "__mod__",
    "__pow__",
    "__matmul__",
    "__and__",
    "__or__",
    "__xor__",
    "__radd__",
    "__rsub__",
    "__rmul__",
    "__rtruediv__",
    "__rfloordiv__",
    "__rmod__",
    "__rpow__",
    "__rmatmul__",
    "__rand__",
    "__ror__",
    "__rxor__",
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
}


def _tensor_method_wrapper(name: str, orig: Callable) -> Callable:
    def method(self, *args, **kwargs):
        proxy = _patch._find_proxy(args, kwargs)
        if proxy is None:
            return orig(self, *args, **kwargs)
        if name in _REFLECTABLE:
            return NotImplemented  # Python then asks the Proxy's reflected operator
        if name == "__getitem__":
            return proxy.tracer.create_proxy("call_function", operator.getitem, (self,) + args, {})
        return proxy.tracer.create_proxy("call_method", name, (self,) + args, kwargs)

    method.__name__ = name
    return method
