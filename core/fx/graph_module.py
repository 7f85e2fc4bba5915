"""``GraphModule``: a Module whose ``forward`` is Python generated from a Graph."""

from __future__ import annotations

import itertools
import linecache
import os
from typing import Any

from ember.nn import Module

from .graph import Graph

__all__ = ["GraphModule"]

_counter = itertools.count()


def _exec(src: str, globals_: dict) -> Any:
    # a unique file name registered with linecache, so tracebacks show the generated lines
    key = f"<eval_with_key>.{next(_counter)}"
    linecache.cache[key] = (len(src), None, src.splitlines(True), key)
    exec(compile(src, key, "exec"), globals_)
    return globals_["forward"]


def _copy_attr(src: Module, dst: Module, target: str) -> None:
    """Copy ``src.<target>`` to ``dst`` along the dotted path, making empty Modules between."""
    *prefix, field = target.split(".")
    for item in prefix:
        f = getattr(src, item)
        t = getattr(dst, item, None)
        if f is t:
            return  # the whole submodule is already shared
        if t is None:
            t = Module()
            setattr(dst, item, t)
        src, dst = f, t
    orig = getattr(src, field)
    from ember import Tensor
    from ember.nn import Parameter

    if (
        isinstance(orig, Tensor)
        and not isinstance(orig, Parameter)
        and field in getattr(src, "_buffers", {})
    ):
        dst.register_buffer(field, orig)
    else:
        setattr(dst, field, orig)


def _assign_attr(obj: Any, dst: Module, target: str) -> None:
    *prefix, field = target.split(".")
    for item in prefix:
        t = getattr(dst, item, None)
        if t is None:
            t = Module()
            setattr(dst, item, t)
        dst = t
    setattr(dst, field, obj)


def _has_path(root: Any, target: str) -> bool:
    """Whether ``root`` holds the dotted ``target`` (a branch under a submodule that holds
    tensors of its own, ``loop.cond_graph_0``, is missing from a loaded tree)."""
    obj = root
    for part in target.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


class GraphModule(Module):
    """A Module made from a root (Module or dict of attributes) and a :class:`Graph`.

    The attributes the graph reads (``get_attr`` / ``call_module`` targets) are copied from
    ``root``; ``forward`` is generated from the graph (see :attr:`code`). After editing
    ``graph``, call :meth:`recompile`.
    """

    def __new__(cls, *args, **kwargs):
        # one class per instance, so ``forward`` can be a real method of it (as torch.fx does)
        if "_fx_impl" not in cls.__dict__:
            cls = type(cls.__name__, (cls,), {"_fx_impl": True})
        return super().__new__(cls)

    def __init__(
        self, root: Module | dict[str, Any], graph: Graph, class_name: str = "GraphModule"
    ) -> None:
        super().__init__()
        type(self).__name__ = class_name
        type(self).__qualname__ = class_name
        if isinstance(root, Module):
            if hasattr(root, "training"):
                self.training = root.training
            for node in graph.nodes:
                if node.op in ("get_attr", "call_module"):
                    sub = node.meta.get("subgraph") if node.op == "get_attr" else None
                    if sub is not None and not _has_path(root, node.target):
                        # a cond/while_loop branch loaded from JSON (serialize.py)
                        _assign_attr(GraphModule({}, sub, "GraphModule"), self, node.target)
                        continue
                    _copy_attr(root, self, node.target)
        elif isinstance(root, dict):
            for node in graph.nodes:
                if node.op in ("get_attr", "call_module"):
                    sub = node.meta.get("subgraph") if node.op == "get_attr" else None
                    if node.target not in root and sub is not None:
                        # a cond/while_loop branch loaded from JSON (serialize.py)
                        _assign_attr(GraphModule({}, sub, "GraphModule"), self, node.target)
                        continue
                    if node.target not in root:
                        raise RuntimeError(
                            f"Node {node} referenced target {node.target} but "
                            "that target was not provided in ``root``!"
                        )
                    _assign_attr(root[node.target], self, node.target)
        else:
            raise RuntimeError(f"Unsupported type {type(root).__name__} passed for root!")
        self.graph = graph

    # ---- graph and code ------------------------------------------------------------------
    @property
    def graph(self) -> Graph:
        return self.__dict__["_graph"]

    @graph.setter
    def graph(self, g: Graph) -> None:
        if not isinstance(g, Graph):
            raise TypeError(f"GraphModule.graph must be a Graph, got {type(g).__name__}")
        self.__dict__["_graph"] = g
        g.owning_module = self
        self.recompile()

    @property
    def code(self) -> str:
        """The Python source of ``forward`` generated from the graph."""
        return self.__dict__["_code"]

    def recompile(self):
        """Regenerate ``forward`` from ``self.graph``; returns the generated PythonCode."""
        python_code = self.graph.python_code(root_module="self")
        self.__dict__["_code"] = python_code.src
        type(self).forward = _exec(python_code.src, dict(python_code.globals))
        return python_code

    # ---- submodule surgery (used by graph passes) ----------------------------------------
    def add_submodule(self, target: str, m: Module) -> bool:
        """Install ``m`` at the dotted path ``target``, creating empty Modules on the way."""
        *prefix, field = target.split(".")
        mod: Module = self
        for item in prefix:
            sub = getattr(mod, item, None)
            if sub is None:
                sub = Module()
                mod.add_module(item, sub)
            elif not isinstance(sub, Module):
                return False
            mod = sub
        mod.add_module(field, m)
        return True

    def delete_submodule(self, target: str) -> bool:
        """Remove the submodule at ``target``; False when there is none."""
        *prefix, field = target.split(".")
        mod: Any = self
        for item in prefix:
            mod = getattr(mod, item, None)
            if not isinstance(mod, Module):
                return False
        if not isinstance(getattr(mod, field, None), Module):
            return False
        delattr(mod, field)
        return True

    def delete_all_unused_submodules(self) -> None:
        """Drop every submodule no ``call_module``/``get_attr`` node (or its parents) uses."""
        used: set[str] = set()
        for node in self.graph.nodes:
            if node.op in ("call_module", "get_attr"):
                parts = node.target.split(".")
                used.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
                if node.op == "call_module":  # everything inside a called module is used
                    used.update(
                        f"{node.target}.{n}"
                        for n, _ in self.get_submodule(node.target).named_modules()
                        if n
                    )
        for name, _ in reversed(list(self.named_modules())):
            if name and name not in used:
                self.delete_submodule(name)

    def print_readable(self, print_output: bool = True) -> str:
        text = f"class {type(self).__name__}(ember.nn.Module):{self.code}"
        if print_output:
            print(text)
        return text

    def __str__(self) -> str:
        return super().__str__() + "\n\n" + self.code

    # ---- copying and pickling ------------------------------------------------------------
    def __reduce__(self):
        body = {k: v for k, v in self.__dict__.items() if k not in ("_graph", "_code")}
        return (_rebuild, (body, self.graph.__getstate__(), type(self).__name__))

    def __deepcopy__(self, memo: dict):
        import copy

        body = {k: v for k, v in self.__dict__.items() if k not in ("_graph", "_code")}
        body = copy.deepcopy(body, memo)
        return _rebuild(body, self.graph.__getstate__(), type(self).__name__)

    def __copy__(self):
        res = GraphModule(self, self.graph, type(self).__name__)
        res.__dict__.update(
            {k: v for k, v in self.__dict__.items() if k not in ("_graph", "_code")}
        )
        return res

    def to_folder(self, folder: str, module_name: str = "FxModule") -> None:
        """Write ``module.py`` (the code) and ``state.safetensors`` (the weights) to ``folder``."""
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "module.py"), "w") as f:
            f.write(f"# generated by ember.fx from {module_name}\nimport ember\n{self.code}\n")
        from .serialize import graph_to_json

        with open(os.path.join(folder, "graph.json"), "w") as f:
            f.write(graph_to_json(self.graph))
        from ember.serialization import save_safetensors

        save_safetensors(self.state_dict(), os.path.join(folder, "state.safetensors"))


def _rebuild(body: dict, graph_state: dict, class_name: str) -> GraphModule:
    g = Graph.__new__(Graph)
    g.__setstate__(graph_state)
    gm = GraphModule.__new__(GraphModule)
    Module.__init__(gm)
    gm.__dict__.update(body)
    type(gm).__name__ = type(gm).__qualname__ = class_name
    gm.graph = g
    return gm
