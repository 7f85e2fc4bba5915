"""``Node``: one operation of a ``Graph`` (torch.fx's six opcodes), and the argument mappers."""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

__all__ = ["Node", "Argument", "Target", "map_arg", "map_aggregate", "has_side_effect"]

Argument = Any  # a Node, a Python scalar/str/None/slice/dtype, or a tuple/list/dict of those
Target = Callable[..., Any] | str  # a call_function's callable, else a name or path

_OPCODES = ("placeholder", "get_attr", "call_function", "call_method", "call_module", "output")

# Functions whose calls dead-code elimination must keep even when their result is unused.
_side_effectful_functions: set = {operator.setitem}


def has_side_effect(fn: Callable) -> Callable:
    """Mark ``fn`` as side-effectful: ``Graph.eliminate_dead_code`` keeps its calls."""
    _side_effectful_functions.add(fn)
    return fn


def map_aggregate(a: Argument, fn: Callable[[Argument], Argument]) -> Argument:
    """Apply ``fn`` to every leaf of the nested tuples/lists/dicts/slices in ``a``."""
    if isinstance(a, tuple):
        t = tuple(map_aggregate(e, fn) for e in a)
        return type(a)(*t) if hasattr(a, "_fields") else t  # keep NamedTuples
    if isinstance(a, list):
        return [map_aggregate(e, fn) for e in a]
    if isinstance(a, dict):
        return {k: map_aggregate(v, fn) for k, v in a.items()}
    if isinstance(a, slice):
        return slice(
            map_aggregate(a.start, fn), map_aggregate(a.stop, fn), map_aggregate(a.step, fn)
        )
    return fn(a)


def map_arg(a: Argument, fn: Callable[[Node], Argument]) -> Argument:
    """Apply ``fn`` to every ``Node`` inside the (nested) argument ``a``."""
    if not callable(fn):
        raise TypeError("map_arg(a, fn): fn must be a callable")
    return map_aggregate(a, lambda x: fn(x) if isinstance(x, Node) else x)


class Node:
    """One operation in a :class:`Graph`.

    ``op`` is one of ``placeholder, get_attr, call_function, call_method, call_module, output``;
    ``target`` is the argument name, the attribute path, the callable itself, the method name,
    the module path, or ``"output"``. ``users`` maps each node that reads this one to ``None``.
    """

    def __init__(
        self,
        graph,
        name: str,
        op: str,
        target: Any,
        args: tuple,
        kwargs: dict,
        return_type: Any = None,
    ) -> None:
        if op not in _OPCODES:
            raise ValueError(f"Node: unknown opcode {op!r}; expected one of {_OPCODES}")
        if op == "call_function" and not callable(target):
            raise ValueError(
                f"Node [graph = {graph}, name = '{name}'] target {target} has type "
                f"{type(target).__name__} but a Callable is expected"
            )
        if op in ("call_method", "call_module", "get_attr", "placeholder") and not isinstance(
            target, str
        ):
            raise ValueError(
                f"Node [graph = {graph}, name = '{name}'] target {target!r} has "
                f"type {type(target).__name__} but a str is expected"
            )
        self.graph = graph
        self.name = name
        self.op = op
        self.target = target
        self.type = return_type
        self.users: dict[Node, None] = {}
        self.meta: dict[str, Any] = {}
        self._input_nodes: dict[Node, None] = {}
        self._args: tuple = ()
        self._kwargs: dict = {}
        self._prev = self._next = self  # the graph's doubly linked list
        self._erased = False
        self._update_args_kwargs(args, kwargs)

    # ---- list links ----------------------------------------------------------------------
    @property
    def next(self) -> Node:
        return self._next

    @property
    def prev(self) -> Node:
        return self._prev

    def _remove_from_list(self) -> None:
        p, n = self._prev, self._next
        p._next, n._prev = n, p
        self._prev = self._next = self

    def prepend(self, x: Node) -> None:
        """Insert ``x`` before this node in the graph's node list."""
        if x is self:
            raise ValueError("Node.prepend: cannot prepend a node to itself")
        x._remove_from_list()
        p = self._prev
        p._next, x._prev = x, p
        x._next, self._prev = self, x

    def append(self, x: Node) -> None:
        """Insert ``x`` after this node in the graph's node list."""
        self._next.prepend(x)

    # ---- arguments -----------------------------------------------------------------------
    @property
    def args(self) -> tuple:
        return self._args

    @args.setter
    def args(self, a: tuple) -> None:
        self._update_args_kwargs(tuple(a), self._kwargs)

    @property
    def kwargs(self) -> dict:
        return self._kwargs

    @kwargs.setter
    def kwargs(self, k: dict) -> None:
        self._update_args_kwargs(self._args, dict(k))

    @property
    def all_input_nodes(self) -> list[Node]:
        return list(self._input_nodes)

    def _update_args_kwargs(self, args: tuple, kwargs: dict) -> None:
        for old in self._input_nodes:
            old.users.pop(self, None)
        self._input_nodes = {}
        self._args, self._kwargs = args, kwargs

        def note(n: Node) -> Node:
            if n.graph is not self.graph:
                raise RuntimeError(
                    f"Node {self.name!r} takes argument {n.name!r} from another "
                    "graph; copy it into this graph first (Graph.node_copy)"
                )
            self._input_nodes.setdefault(n)
            return n

        map_arg(args, note)
        map_arg(kwargs, note)
        for n in self._input_nodes:
            n.users.setdefault(self)

    def update_arg(self, idx: int, arg: Argument) -> None:
        args = list(self._args)
        args[idx] = arg
        self.args = tuple(args)

    def update_kwarg(self, key: str, arg: Argument) -> None:
        kwargs = dict(self._kwargs)
        kwargs[key] = arg
        self.kwargs = kwargs

    def replace_all_uses_with(
        self,
        replace_with: Node,
        delete_user_cb: Callable[[Node], bool] = lambda user: True,
        *,
        propagate_meta: bool = False,
    ) -> list[Node]:
        """Make every user of this node read ``replace_with`` instead; return those users."""
        if propagate_meta:
            for k, v in self.meta.items():
                replace_with.meta.setdefault(k, v)
        changed = []
        for user in list(self.users):
            if not delete_user_cb(user):
                continue
            user.replace_input_with(self, replace_with)
            changed.append(user)
        return changed

    def replace_input_with(self, old_input: Node, new_input: Node) -> None:
        """Replace every occurrence of ``old_input`` in this node's arguments."""

        def sub(n: Node) -> Node:
            return new_input if n is old_input else n

        self._update_args_kwargs(map_arg(self._args, sub), map_arg(self._kwargs, sub))

    def is_impure(self) -> bool:
        """True for nodes dead-code elimination must keep (inputs, outputs, side effects)."""
        if self.op in ("placeholder", "output"):
            return True
        if self.op == "call_function":
            return self.target in _side_effectful_functions
        if self.op == "call_method":
            return self.target.endswith("_") and not self.target.endswith("__")  # in-place
        if self.op == "call_module":
            mod = self.graph.owning_module
            if mod is not None:
                try:
                    sub = mod.get_submodule(self.target)
                except AttributeError:
                    return False
                return bool(getattr(sub, "_is_impure", False))
        return False

    @property
    def stack_trace(self) -> str | None:
        """Where the node was traced from (with ``Tracer.record_stack_traces = True``)."""
        return self.meta.get("stack_trace")

    def format_node(self) -> str:
        if self.op == "placeholder":
            default = f" = {self.args[0]!r}" if self.args else ""
            return (
                f"%{self.name} : [num_users={len(self.users)}] = "
                f"placeholder[target={self.target}]{default}"
            )
        if self.op == "output":
            return f"return {_fmt(self.args[0])}"
        from ._names import target_name

        target = target_name(self.target) if self.op == "call_function" else self.target
        return (
            f"%{self.name} : [num_users={len(self.users)}] = {self.op}[target={target}]"
            f"(args = {_fmt(self.args)}, kwargs = {_fmt(self.kwargs)})"
        )

    def __repr__(self) -> str:
        return self.name


def _fmt(a: Argument) -> str:
    return str(map_arg(a, lambda n: _Percent(n.name)))


class _Percent(str):
    def __repr__(self) -> str:
        return "%" + self
