"""``ScriptModule`` / ``ScriptFunction``: compiled programs (traced or scripted) on ember.fx.

A ScriptModule *is* an fx ``GraphModule`` (it subclasses it): ``.graph`` is the fx Graph,
``.code`` the generated Python, parameters and buffers keep their original dotted names, and
``save`` writes the safe archive format of ``ember.export`` (graph JSON + safetensors).
``ember.jit.script`` builds the same class from graphs with ``cond`` / ``while_loop`` nodes.
"""

from __future__ import annotations

import os
from typing import IO, Any

from ember.fx import Graph, GraphModule
from ember.nn import Module

__all__ = [
    "ScriptModule",
    "TopLevelTracedModule",
    "RecursiveScriptModule",
    "ScriptFunction",
    "script_method",
]


def script_method(fn: Any) -> Any:
    """Mark a method of a ``ScriptModule`` subclass for compilation (PyTorch's pre-1.2 API,
    ``class M(torch.jit.ScriptModule)`` with ``@torch.jit.script_method def forward``)."""
    from ._decorators import _mark

    return _mark(fn, "export", "script_method")


class _LegacyMethod:
    """``module.__getattr__("forward")`` of a ScriptModule: the bound method, with the
    compiled ``graph`` and ``code`` (as torch's ScriptMethod)."""

    def __init__(self, module: ScriptModule, name: str) -> None:
        self._module, self.name = module, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._module, self.name)(*args, **kwargs)

    def _gm(self) -> GraphModule:
        module = self._module
        if self.name == "forward":
            return module._compiled() if module.__dict__.get("_legacy") else module
        compiled = module._compiled() if module.__dict__.get("_legacy") else module
        return compiled.__dict__["_methods"][self.name]

    @property
    def graph(self) -> Graph:
        return self._gm().graph

    @property
    def code(self) -> str:
        return self._gm().code


class ScriptModule(GraphModule):
    """A Module whose ``forward`` runs an fx Graph (``torch.jit.ScriptModule``).

    Subclassed the pre-1.2 way (``class M(torch.jit.ScriptModule)``, its ``__init__``
    calling ``super().__init__()`` with no arguments, methods marked
    ``@torch.jit.script_method``), it is built like any Module and runs ``forward`` as
    written; ``graph``, ``code`` and saving compile it (``ember.jit.script``) on first use.
    """

    def __init__(self, root=None, graph: Graph | None = None, class_name: str = "ScriptModule"):
        if root is None and graph is None:
            Module.__init__(self)
            self.__dict__.update(original_name=type(self).__name__, _methods={}, _legacy=True)
            return
        super().__init__(root, graph, class_name)
        if isinstance(root, Module):
            # keep the root's whole state (as torch's compiled modules do), not only the
            # tensors the graph reads, so state_dict()/load_state_dict() match the original
            from ember.fx.graph_module import _copy_attr

            have = set(self.state_dict())
            for name, _ in [*root.named_parameters(), *root.named_buffers()]:
                if name not in have:
                    _copy_attr(root, self, name)
        self.__dict__["original_name"] = class_name
        self.__dict__.setdefault("_methods", {})

    def _compiled(self) -> ScriptModule:
        compiled = self.__dict__.get("_compiled_legacy")
        if compiled is None:
            from ._script import _script_module

            compiled = self.__dict__["_compiled_legacy"] = _script_module(self)
        return compiled

    def _get_graph(self) -> Graph:
        if "_graph" not in self.__dict__ and self.__dict__.get("_legacy"):
            return self._compiled().graph
        return self.__dict__["_graph"]

    graph = property(_get_graph, GraphModule.graph.fset)

    @property
    def code(self) -> str:
        if "_code" not in self.__dict__ and self.__dict__.get("_legacy"):
            return self._compiled().code
        return self.__dict__["_code"]

    def __str__(self) -> str:
        if self.__dict__.get("_legacy"):  # not compiled yet: print as the Module it is
            return Module.__str__(self)
        return super().__str__()

    def __getattr__(self, name: str) -> Any:
        marked = getattr(getattr(type(self), name, None), "_ember_jit_modifier", None)
        if name == "forward" or name in self.__dict__.get("_methods", {}) or marked == "export":
            return _LegacyMethod(self, name)  # m.__getattr__("forward").graph, as torch's
        if self.__dict__.get("_legacy") and name in ("_graph", "_code"):
            raise AttributeError(name)
        return super().__getattr__(name)

    @property
    def inlined_graph(self) -> Graph:
        """The graph with every call inlined (traced graphs already are)."""
        return self.graph

    def extra_repr(self) -> str:
        return f"original_name={self.__dict__.get('original_name', type(self).__name__)}"

    def add_method(self, name: str, gm: GraphModule) -> None:
        """Attach another compiled method (``trace_module``'s extra inputs, ``@export``)."""
        if not name.isidentifier() or name == "forward":
            raise ValueError(f"cannot add a method named {name!r}")
        self.__dict__["_methods"][name] = gm
        self.__dict__[name] = gm

    def save(self, f: str | os.PathLike | IO[bytes], _extra_files: dict | None = None) -> None:
        """Save to ``f`` (same as ``ember.jit.save(self, f)``)."""
        from ._serialization import save

        save(self._compiled() if self.__dict__.get("_legacy") else self, f, _extra_files)


class TopLevelTracedModule(ScriptModule):
    """What ``ember.jit.trace`` returns for a Module."""


class RecursiveScriptModule(ScriptModule):
    """What ``ember.jit.load`` returns (and ``ember.jit.script`` for Modules)."""


class ScriptFunction:
    """A compiled function (``ember.jit.trace`` / ``script`` of a plain function)."""

    def __init__(self, gm: GraphModule, name: str) -> None:
        self._gm = gm
        self.name = name
        self.__name__ = name
        self.__qualname__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._gm(*args, **kwargs)

    @property
    def graph(self) -> Graph:
        return self._gm.graph

    @property
    def inlined_graph(self) -> Graph:
        return self._gm.graph

    @property
    def code(self) -> str:
        return self._gm.code

    @property
    def graph_module(self) -> GraphModule:
        return self._gm

    def save(self, f: str | os.PathLike | IO[bytes], _extra_files: dict | None = None) -> None:
        from ._serialization import save

        save(self, f, _extra_files=_extra_files)

    def __repr__(self) -> str:
        return f"<ember.jit.ScriptFunction {self.name}>"
