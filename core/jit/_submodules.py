"""The module hierarchy of a traced program, as torch.jit.trace keeps it.

ember's trace inlines every call into one graph (the root's ``forward``). torch's traced
module still holds one traced submodule per submodule of the model — parameterless ones
included — printed as ``Name(original_name=Name)`` and each with its own ``.code`` and
``.graph``. :func:`attach_submodules` rebuilds that tree on the traced ScriptModule; a
submodule's ``code``/``graph`` are cut from the root graph: the nodes recorded while that
submodule's ``forward`` ran (``node.meta["nn_module_stack"]``), first call only, with the
values it read from outside as its inputs.
"""

from __future__ import annotations

import weakref
from typing import Any

from ember.nn import Module

__all__ = ["TracedSubmodule", "attach_submodules", "module_names", "apply_module_names"]


class TracedSubmodule(Module):
    """A submodule of a traced program (torch's ``TracedModule`` below the top level)."""

    def __init__(self, original_name: str = "Module") -> None:
        super().__init__()
        self.__dict__["original_name"] = original_name

    def _get_name(self) -> str:
        return self.__dict__.get("original_name", "Module")

    def extra_repr(self) -> str:
        return f"original_name={self._get_name()}"

    def _subprogram(self):
        owner = self.__dict__.get("_traced_owner")
        owner = owner() if owner is not None else None
        path = self.__dict__.get("_traced_path")
        if owner is None or path is None:
            raise RuntimeError(
                f"{self._get_name()}: this submodule has no graph of its own (a loaded "
                "program keeps the whole forward in its top-level module's graph)"
            )
        return _cut(owner, path, self._get_name())

    @property
    def graph(self):
        """The part of the top-level graph this submodule's ``forward`` recorded."""
        return self._subprogram().graph

    @property
    def code(self) -> str:
        """Python code of :attr:`graph`."""
        return self._subprogram().code

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self._subprogram()(*args, **kwargs)

    def __getstate__(self) -> dict:
        # the link to the owning program is a weak reference (no cycle): not pickled
        state = dict(self.__dict__)
        state.pop("_traced_owner", None)
        return state


def _convert(sub: Module, name: str) -> Module:
    if type(sub) is Module:  # a plain holder made while copying the weights
        sub.__class__ = TracedSubmodule
    if isinstance(sub, TracedSubmodule):
        sub.__dict__["original_name"] = name
    return sub


def apply_module_names(top: Module, names: dict[str, str]) -> None:
    """Make every ``path -> class name`` of ``names`` a :class:`TracedSubmodule` of ``top``
    (creating the parameterless ones), parents before children."""
    for path in sorted(names, key=lambda p: p.count(".")):
        *prefix, field = path.split(".")
        parent = top
        for p in prefix:
            parent = parent._modules.get(p) if isinstance(parent, Module) else None
            if parent is None:
                break
        if parent is None:
            continue
        sub = parent._modules.get(field)
        if sub is None:
            if field in parent.__dict__ or hasattr(type(parent), field):
                continue
            parent.add_module(field, TracedSubmodule(names[path]))
        else:
            _convert(sub, names[path])
    # children in the model's registration order (the weight holders came first)
    rank = {p: i for i, p in enumerate(names)}
    for mpath, m in top.named_modules():
        kids = list(m._modules.items())

        def key(kv, b=mpath):
            return rank.get(f"{b}.{kv[0]}" if b else kv[0], len(rank))

        if kids != sorted(kids, key=key):
            m._modules.clear()
            m._modules.update(sorted(kids, key=key))


def attach_submodules(sm: Module, model: Module) -> None:
    """Give the traced ``sm`` the submodule tree of ``model`` (see the module docstring)."""
    names = module_names(model)
    apply_module_names(sm, names)
    ref = weakref.ref(sm)
    for path in names:
        sub = _get(sm, path)
        if isinstance(sub, TracedSubmodule):
            sub.__dict__["_traced_owner"] = ref
            sub.__dict__["_traced_path"] = path


def module_names(model: Module) -> dict[str, str]:
    """``{path: class name}`` of ``model``'s submodules (a compiled submodule by its original
    name; the branch graphs of a scripted ``cond``/``while_loop`` left out)."""
    from ember.fx import GraphModule

    from ._script_module import ScriptModule

    out: dict[str, str] = {}
    skip: list[str] = []
    for p, m in model.named_modules():
        if not p or any(p == s or p.startswith(s + ".") for s in skip):
            continue
        if isinstance(m, GraphModule) and not isinstance(m, ScriptModule):
            skip.append(p)
            continue
        name = m.__dict__.get("original_name")
        out[p] = name if isinstance(name, str) else type(m).__name__
    return out


def _get(top: Module, path: str):
    m = top
    for p in path.split("."):
        m = m._modules.get(p) if isinstance(m, Module) else None
        if m is None:
            return None
    return m


def _cut(owner, path: str, name: str):
    """A GraphModule of the nodes recorded under ``path`` (its first call)."""
    from ember.fx import Graph, GraphModule

    nodes = list(owner.graph.nodes)
    run: list = []
    for i, n in enumerate(nodes):
        if path in (n.meta.get("nn_module_stack") or {}):
            if run and nodes.index(run[-1]) != i - 1:
                break  # a second call of the same submodule
            run.append(n)
    if not run:
        raise RuntimeError(
            f"{name} ({path!r}) ran no recorded ops when the program was traced "
            "(it was not called, or returned its input unchanged)"
        )
    inside = set(run)
    graph = Graph()
    env: dict = {}
    for n in run:  # the values read from outside, in first-use order, become the inputs
        for a in n.all_input_nodes:
            if a not in inside and a not in env:
                env[a] = graph.placeholder(a.name)
    root: dict[str, Any] = {}
    prefix = path + "."
    for n in run:
        if n.op == "get_attr":
            rel = n.target[len(prefix) :] if n.target.startswith(prefix) else n.target
            root[rel] = _fetch(owner, n.target)
            env[n] = graph.get_attr(rel)
            continue
        env[n] = graph.node_copy(n, lambda x: env[x])
    outs = [n for n in run if any(u not in inside for u in n.users)] or run[-1:]
    graph.output(env[outs[0]] if len(outs) == 1 else tuple(env[o] for o in outs))
    return GraphModule(root, graph, name)


def _fetch(owner, target: str):
    obj = owner
    for atom in target.split("."):
        obj = getattr(obj, atom)
    return obj
