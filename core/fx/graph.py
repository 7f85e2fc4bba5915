"""``Graph``: the ordered node list that every graph consumer in ember reads (torch.fx.Graph)."""

from __future__ import annotations

import builtins
import contextlib
import keyword
import re
from collections.abc import Callable, Iterator
from typing import Any

from .node import Argument, Node, map_arg

__all__ = ["Graph", "PythonCode"]

_empty = object()  # "no default" for placeholders
_RESERVED = (
    set(keyword.kwlist)
    | set(dir(builtins))
    | {"self", "ember", "operator", "inf", "nan", "device", "forward"}
)


class PythonCode:
    """The generated ``forward`` source and the globals it runs under."""

    def __init__(self, src: str, globals: dict[str, Any]) -> None:
        self.src = src
        self.globals = globals


class _NodeList:
    def __init__(self, graph: Graph, reverse: bool = False) -> None:
        self._graph, self._reverse = graph, reverse

    def __len__(self) -> int:
        return self._graph._len

    def __iter__(self) -> Iterator[Node]:
        root = self._graph._root
        cur = root._prev if self._reverse else root._next
        while cur is not root:
            nxt = cur._prev if self._reverse else cur._next
            if not cur._erased:
                yield cur
            cur = nxt

    def __reversed__(self) -> _NodeList:
        return _NodeList(self._graph, not self._reverse)


class Graph:
    """A list of :class:`Node` s in execution order; build with ``placeholder``,
    ``get_attr``, ``call_function``, ``call_method``, ``call_module`` and ``output``."""

    def __init__(self, owning_module=None, tracer_cls=None) -> None:
        root = Node.__new__(Node)
        root.graph, root.name, root.op, root.target = self, "_root", "root", ""
        root._prev = root._next = root
        root._erased = False
        root.users, root._input_nodes, root._args, root._kwargs, root.meta = {}, {}, (), {}, {}
        self._root = root
        self._len = 0
        self._used_names: set[str] = set()
        self._base_count: dict[str, int] = {}
        self._insert = self._root.prepend
        self.owning_module = owning_module
        self._tracer_cls = tracer_cls

    # ---- node list -----------------------------------------------------------------------
    @property
    def nodes(self) -> _NodeList:
        return _NodeList(self)

    def find_nodes(self, *, op: str, target: Any = None) -> list[Node]:
        return [n for n in self.nodes if n.op == op and (target is None or n.target == target)]

    def _name(self, candidate: str) -> str:
        # torch.fx's scheme: "add", "add_1", ...; "layers.0" -> "layers_0"
        cand = re.sub(r"[^0-9a-zA-Z_]+", "_", candidate) or "_unnamed"
        if cand[0].isdigit():
            cand = "_" + cand
        m = re.fullmatch(r"(.*)_(\d+)", cand)
        base, num = (cand, None) if m is None else (m.group(1), int(m.group(2)))
        if not num:
            num = self._base_count.get(base, 0)
        while cand in self._used_names or cand in _RESERVED:
            num += 1
            cand = f"{base}_{num}"
        self._used_names.add(cand)
        self._base_count[base] = num
        return cand

    def create_node(
        self,
        op: str,
        target: Any,
        args: tuple | None = None,
        kwargs: dict | None = None,
        name: str | None = None,
        type_expr: Any = None,
    ) -> Node:
        """Create a node and insert it at the current insert point (the end by default)."""
        args = tuple(args) if args is not None else ()
        kwargs = dict(kwargs) if kwargs is not None else {}
        candidate = name if name is not None else _candidate(op, target)
        n = Node(self, self._name(candidate), op, target, args, kwargs, type_expr)
        self._insert(n)
        self._len += 1
        return n

    @contextlib.contextmanager
    def _insert_point(self, fn: Callable[[Node], None]):
        prev, self._insert = self._insert, fn
        try:
            yield
        finally:
            self._insert = prev

    def inserting_before(self, n: Node | None = None):
        """Context manager: new nodes go before ``n`` (or at the graph's start)."""
        if n is None:
            return self.inserting_after(self._root)
        if n.graph is not self:
            raise ValueError("inserting_before: the node does not belong to this graph")
        return self._insert_point(n.prepend)

    def inserting_after(self, n: Node | None = None):
        """Context manager: new nodes go after ``n`` in order (or at the graph's end)."""
        if n is None:
            return self.inserting_before(self._root)
        if n.graph is not self:
            raise ValueError("inserting_after: the node does not belong to this graph")
        last = [n]

        def insert(x: Node) -> None:
            last[0].append(x)
            last[0] = x

        return self._insert_point(insert)

    def erase_node(self, to_erase: Node) -> None:
        """Remove a node that has no users."""
        if to_erase.graph is not self or to_erase._erased:
            raise RuntimeError(f"erase_node: node {to_erase} is not in this graph")
        if to_erase.users:
            raise RuntimeError(
                f"Tried to erase Node {to_erase} but it still had "
                f"{len(to_erase.users)} users in the graph: {to_erase.users}!"
            )
        to_erase._remove_from_list()
        to_erase._erased = True
        to_erase._update_args_kwargs((), {})
        self._len -= 1

    # ---- the six opcodes -----------------------------------------------------------------
    def placeholder(self, name: str, type_expr: Any = None, default_value: Any = _empty) -> Node:
        args = () if default_value is _empty else (default_value,)
        return self.create_node("placeholder", name, args, type_expr=type_expr)

    def get_attr(self, qualified_name: str, type_expr: Any = None) -> Node:
        return self.create_node("get_attr", qualified_name, type_expr=type_expr)

    def call_module(
        self,
        module_name: str,
        args: tuple | None = None,
        kwargs: dict | None = None,
        type_expr: Any = None,
    ) -> Node:
        return self.create_node("call_module", module_name, args, kwargs, type_expr=type_expr)

    def call_method(
        self,
        method_name: str,
        args: tuple | None = None,
        kwargs: dict | None = None,
        type_expr: Any = None,
    ) -> Node:
        return self.create_node("call_method", method_name, args, kwargs, type_expr=type_expr)

    def call_function(
        self,
        the_function: Callable,
        args: tuple | None = None,
        kwargs: dict | None = None,
        type_expr: Any = None,
    ) -> Node:
        return self.create_node("call_function", the_function, args, kwargs, type_expr=type_expr)

    def output(self, result: Argument, type_expr: Any = None) -> Node:
        return self.create_node("output", "output", (result,), type_expr=type_expr)

    # ---- copying -------------------------------------------------------------------------
    def node_copy(
        self, node: Node, arg_transform: Callable[[Node], Argument] = lambda x: x
    ) -> Node:
        """Copy ``node`` (from any graph) into this one, mapping its inputs by ``arg_transform``."""
        args = map_arg(node.args, arg_transform)
        kwargs = map_arg(node.kwargs, arg_transform)
        name = node.name if node.name not in self._used_names else None
        new = self.create_node(
            node.op,
            node.target,
            args,
            kwargs,
            name if name is not None else _candidate(node.op, node.target),
            node.type,
        )
        new.meta = dict(node.meta)
        return new

    def graph_copy(
        self, g: Graph, val_map: dict[Node, Node], return_output_node: bool = False
    ) -> Argument:
        """Copy every node of ``g`` except its output into this graph; return the output value."""
        for node in g.nodes:
            if node in val_map:
                continue
            if node.op == "output":
                out = map_arg(node.args[0], lambda n: val_map[n])
                return (out, node) if return_output_node else out
            val_map[node] = self.node_copy(node, lambda n: val_map[n])
        return None

    def __deepcopy__(self, memo: dict) -> Graph:
        g = Graph(tracer_cls=self._tracer_cls)
        out = g.graph_copy(self, {}, return_output_node=True)
        if out is not None:
            rv, old = out
            g.output(rv, type_expr=old.type)
        return g

    def __getstate__(self) -> dict:
        # a flat list, so pickling a long graph does not recurse through the node links
        from .serialize import _flat_nodes

        return {"nodes": _flat_nodes(self)}

    def __setstate__(self, state: dict) -> None:
        from .serialize import _unflatten_into

        self.__init__()
        _unflatten_into(self, state["nodes"])

    # ---- passes --------------------------------------------------------------------------
    def eliminate_dead_code(self) -> bool:
        """Erase nodes whose results are unused and that have no side effects."""
        changed = False
        for node in reversed(self.nodes):
            if not node.users and not node.is_impure():
                self.erase_node(node)
                changed = True
        return changed

    def lint(self) -> None:
        """Check the graph's invariants; raise ``RuntimeError`` naming the first violation."""
        seen: set[Node] = set()
        names: set[str] = set()
        outputs = 0
        for node in self.nodes:
            if node.graph is not self:
                raise RuntimeError(f"Node {node} does not belong to this Graph")
            if node.name in names:
                raise RuntimeError(f"Node redefined name {node.name}!")
            names.add(node.name)
            for arg in node.all_input_nodes:
                if arg.graph is not self or arg._erased:
                    raise RuntimeError(
                        f"Argument '{arg}' of Node '{node}' was used before it "
                        "has been defined! (it is not in this graph)"
                    )
                if arg not in seen:
                    raise RuntimeError(
                        f"Argument '{arg}' of Node '{node}' was used before it "
                        "has been defined! Please check that Nodes in the graph "
                        "are topologically ordered"
                    )
                if node not in arg.users:
                    raise RuntimeError(f"Node {node} is missing from the users of {arg}")
            if node.op == "output":
                outputs += 1
            elif outputs:
                raise RuntimeError(f"Node {node} comes after the graph's output node")
            seen.add(node)
            mod = self.owning_module
            if mod is not None and node.op in ("get_attr", "call_module"):
                obj: Any = mod
                for atom in node.target.split("."):
                    if not hasattr(obj, atom):
                        raise RuntimeError(
                            f"Node {node} target {node.target} references "
                            f"nonexistent attribute {atom} of {type(obj).__name__}"
                        )
                    obj = getattr(obj, atom)

    # ---- printing and code ---------------------------------------------------------------
    def python_code(self, root_module: str = "self") -> PythonCode:
        from ._codegen import generate

        return generate(self, root_module)

    def __str__(self) -> str:
        lines = ["graph():"] + ["    " + n.format_node() for n in self.nodes]
        return "\n".join(lines)

    def print_tabular(self) -> None:
        """Print one row per node: opcode, name, target, args, kwargs."""
        from ._names import target_name

        rows = [("opcode", "name", "target", "args", "kwargs")]
        for n in self.nodes:
            t = target_name(n.target) if n.op == "call_function" else str(n.target)
            rows.append((n.op, n.name, t, str(n.args), str(n.kwargs)))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        for i, r in enumerate(rows):
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
            if i == 0:
                print("  ".join("-" * w for w in widths))


def _candidate(op: str, target: Any) -> str:
    if op in ("call_module", "get_attr", "placeholder", "call_method"):
        return str(target)  # "*args" -> "_args", as torch.fx names it
    if op == "output":
        return "output"
    if getattr(type(target), "_fx_target_name", None) is not None:  # custom op: "crop", not
        return target.__name__  # "default" (ember.ops.mylib.crop.default), as torch names it
    from ._names import target_name

    return target_name(target).rsplit(".", 1)[-1]
