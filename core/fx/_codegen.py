"""Python source for a Graph: the readable ``forward`` behind ``GraphModule.code``."""

from __future__ import annotations

import math
import operator
from typing import Any

from ._names import target_name
from .node import Node

_BINARY = {
    operator.add: "+",
    operator.sub: "-",
    operator.mul: "*",
    operator.truediv: "/",
    operator.floordiv: "//",
    operator.mod: "%",
    operator.pow: "**",
    operator.matmul: "@",
    operator.and_: "&",
    operator.or_: "|",
    operator.xor: "^",
    operator.lshift: "<<",
    operator.rshift: ">>",
    operator.eq: "==",
    operator.ne: "!=",
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
}
_UNARY = {operator.neg: "-", operator.pos: "+", operator.invert: "~", operator.not_: "not "}


class _Globals:
    """Names the generated code reads: ``ember`` plus one bound name per other object."""

    def __init__(self) -> None:
        import ember

        self.ns: dict[str, Any] = {
            "ember": ember,
            "inf": math.inf,
            "nan": math.nan,
            "device": ember.device,
        }
        self._ids: dict[int, str] = {}

    def bind(self, obj: Any, hint: str) -> str:
        if id(obj) in self._ids:
            return self._ids[id(obj)]
        base = "".join(c if c.isalnum() else "_" for c in hint) or "_obj"
        name, i = f"_{base}" if not base.startswith("_") else base, 0
        while name in self.ns:
            i += 1
            name = f"_{base}_{i}"
        self.ns[name] = obj
        self._ids[id(obj)] = name
        return name

    def callable_ref(self, fn: Any) -> str:
        qual = target_name(fn)
        if qual.startswith("ember.") and _lookup(self.ns["ember"], qual[6:]) is fn:
            return qual  # looked up at run time, so a GraphModule stays re-traceable
        return self.bind(fn, qual.rsplit(".", 1)[-1])


def _lookup(root: Any, path: str) -> Any:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part, None)
    return obj


def _arg(a: Any, g: _Globals) -> str:
    if isinstance(a, Node):
        return a.name
    if isinstance(a, tuple) and not hasattr(a, "_fields"):
        inner = ", ".join(_arg(e, g) for e in a)
        return f"({inner},)" if len(a) == 1 else f"({inner})"
    if isinstance(a, list):
        return "[" + ", ".join(_arg(e, g) for e in a) + "]"
    if isinstance(a, dict) and all(isinstance(k, str) for k in a):
        return "{" + ", ".join(f"{k!r}: {_arg(v, g)}" for k, v in a.items()) + "}"
    if isinstance(a, slice):
        return f"slice({_arg(a.start, g)}, {_arg(a.stop, g)}, {_arg(a.step, g)})"
    if a is None or a is Ellipsis or isinstance(a, (bool, int, str)):
        return repr(a)
    if isinstance(a, float):
        return repr(a) if math.isfinite(a) else ("-inf" if a < 0 else repr(a))
    from ember.backend.dtype import dtype

    if isinstance(a, dtype) and repr(a).startswith("ember."):
        return repr(a)
    return g.bind(a, type(a).__name__.lower())


def _attr_path(root: str, target: str) -> str:
    out = root
    for atom in target.split("."):
        out = f"{out}.{atom}" if atom.isidentifier() else f'getattr({out}, "{atom}")'
    return out


def _call(fn: str, args: tuple, kwargs: dict, g: _Globals) -> str:
    parts = [_arg(a, g) for a in args] + [f"{k} = {_arg(v, g)}" for k, v in kwargs.items()]
    return f"{fn}({', '.join(parts)})"


def _expr(node: Node, root: str, g: _Globals) -> str:
    op, t, args, kwargs = node.op, node.target, node.args, node.kwargs
    if op == "get_attr":
        return _attr_path(root, t)
    if op == "call_module":
        return _call(_attr_path(root, t), args, kwargs, g)
    if op == "call_method":
        return _call(f"{_arg(args[0], g)}.{t}", args[1:], kwargs, g)
    if not kwargs:
        if t in _BINARY and len(args) == 2:
            return f"{_arg(args[0], g)} {_BINARY[t]} {_arg(args[1], g)}"
        if t in _UNARY and len(args) == 1:
            return f"{_UNARY[t]}{_arg(args[0], g)}"
        if t is operator.getitem and len(args) == 2:
            return f"{_arg(args[0], g)}[{_arg(args[1], g)}]"
        if t is getattr and len(args) == 2 and isinstance(args[1], str) and args[1].isidentifier():
            return f"{_arg(args[0], g)}.{args[1]}"
    return _call(g.callable_ref(t), args, kwargs, g)


def _statement(node: Node, root: str, g: _Globals) -> str:
    if (
        node.op == "call_function"
        and node.target is operator.setitem
        and not node.kwargs
        and len(node.args) == 3
    ):
        obj, key, value = (_arg(a, g) for a in node.args)
        return f"{obj}[{key}] = {value};  {node.name} = None"
    return f"{node.name} = {_expr(node, root, g)}"


def generate(graph, root_module: str = "self"):
    from .graph import PythonCode

    g = _Globals()
    nodes = list(graph.nodes)
    # free each value right after its last use, as torch.fx does, so long graphs hold less
    last_use: dict[Node, Node] = {}
    for node in nodes:
        for inp in node.all_input_nodes:
            last_use[inp] = node
    dies_at: dict[Node, list[Node]] = {}
    for value, user in last_use.items():
        dies_at.setdefault(user, []).append(value)

    params, body = [root_module], []
    # a default is written only where every later positional placeholder has one too
    # (``concrete_args={"x": value}`` for a first argument: ``def forward(self, x, y)``)
    phs = [n for n in nodes if n.op == "placeholder" and not n.target.startswith("*")]
    no_default = {n for i, n in enumerate(phs) if any(not m.args for m in phs[i:])}
    for node in nodes:
        if node.op == "placeholder":
            t = node.target
            if t.startswith("*"):
                params.append(t)
            elif node.args and node not in no_default:
                params.append(f"{t} = {_arg(node.args[0], g)}")
            else:
                params.append(t)
            if node.name != t.lstrip("*"):
                body.append(f"{node.name} = {t.lstrip('*')}")
            continue
        if node.op == "output":
            body.append(f"return {_arg(node.args[0], g)}")
            continue
        line = _statement(node, root_module, g)
        dead = [v.name for v in dies_at.get(node, ())]
        if dead:
            line += ";  " + " = ".join(dead) + " = None"
        body.append(line)
    if not body or not body[-1].startswith("return"):
        body.append("return None")
    src = (
        f"\n\n\ndef forward({', '.join(params)}):\n"
        + "".join(f"    {line}\n" for line in body)
        + "    "
    )
    return PythonCode(src, g.ns)
