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

__all__ = ["ScriptModule", "TopLevelTracedModule", "RecursiveScriptModule", "ScriptFunction"]


class ScriptModule(GraphModule):
    """A Module whose ``forward`` runs an fx Graph (``torch.jit.ScriptModule``)."""

    def __init__(self, root, graph: Graph, class_name: str = "ScriptModule") -> None:
        super().__init__(root, graph, class_name)
        from ember.nn import Module

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

        save(self, f, _extra_files=_extra_files)


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
