"""Which classes a compiled graph is returned as: ember.jit's RecursiveScriptModule /
ScriptFunction (core/jit/_script_module.py), with minimal stand-ins when that file is absent."""

from __future__ import annotations

from typing import Any

from ember.fx.graph import Graph
from ember.fx.graph_module import GraphModule

__all__ = ["module_class", "wrap_function", "eager_function", "add_method", "is_scripted"]


class _ScriptFunction:
    """Stand-in for ember.jit.ScriptFunction: a callable running a compiled GraphModule."""

    def __init__(self, gm: GraphModule, name: str) -> None:
        self.graph_module = gm
        self.name = self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.graph_module(*args, **kwargs)

    @property
    def graph(self) -> Graph:
        return self.graph_module.graph

    @property
    def code(self) -> str:
        return self.graph_module.code


def _jit_classes() -> tuple:
    try:
        from ember.jit import _script_module as sm
    except ImportError:
        return None, None, None
    return sm.RecursiveScriptModule, sm.ScriptFunction, sm.ScriptModule


def module_class() -> type:
    return _jit_classes()[0] or GraphModule


def wrap_function(gm: GraphModule, name: str) -> Any:
    cls = _jit_classes()[1] if _jit_classes()[0] else _ScriptFunction
    return cls(gm, name)


def eager_function(fn: Any, why: str) -> Any:
    """A scripted function whose body needs run-time values (``x.tolist()``, ``int(t)``):
    calls run ``fn`` itself; ``.graph`` / ``.code`` raise, saying why there is none."""
    base = _jit_classes()[1] if _jit_classes()[0] else _ScriptFunction

    class EagerScriptFunction(base):
        def __init__(self) -> None:
            self.name = self.__name__ = self.__qualname__ = fn.__name__
            self._ember_script_original = fn
            self.__doc__ = fn.__doc__

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

        def _no_graph(self) -> Any:
            raise RuntimeError(
                f"ember.jit.script({fn.__name__}) has no graph: it runs as Python because "
                f"compiling it needs values known only at run time:\n{why}"
            )

        graph = inlined_graph = code = graph_module = property(_no_graph)

        def save(self, *args: Any, **kwargs: Any) -> None:
            self._no_graph()

    return EagerScriptFunction()


def add_method(module: GraphModule, name: str, gm: GraphModule) -> None:
    """An ``@export``-ed method: callable as ``module.<name>(...)``, sharing the weights."""
    if hasattr(module, "add_method"):
        module.add_method(name, gm)
    else:
        module.__dict__[name] = gm


def is_scripted(obj: Any) -> bool:
    classes = tuple(c for c in (_ScriptFunction, *_jit_classes()) if c)
    return isinstance(obj, classes)
