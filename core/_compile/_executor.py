"""The planned executor: a captured Graph turned into one straight-line Python function.

Why this form: eager ember pays, per layer, ``Module.__call__`` (hook checks), a ``forward``
frame, attribute look-ups (``self.fc1.weight``) and the functional wrapper's argument handling.
The executor resolves every ``get_attr`` to the tensor object once, binds every target
callable as a global of generated code, and writes ``operator`` calls as Python operators, so a
call runs the node list and nothing else. The ops themselves are ember's own, so autograd
records the same graph and results (values, gradients, the dropout RNG stream) are eager's.

Buffer reuse: where autograd is off (``no_grad``/``inference_mode``; the cache key holds the
grad mode), an activation whose input is a fresh temporary used only by it runs in place
(``F.relu(linear(x), inplace=True)`` is ``np.maximum(y, 0, out=y)``), saving an allocation and
a pass over memory. With autograd on, saved tensors must stay intact, so nothing is reused.
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from typing import Any

from ember.fx.graph import Graph
from ember.fx.node import Node

__all__ = ["build", "plan_inplace"]

_BINOPS = {
    operator.add: "+",
    operator.sub: "-",
    operator.mul: "*",
    operator.truediv: "/",
    operator.floordiv: "//",
    operator.mod: "%",
    operator.pow: "**",
    operator.matmul: "@",
    operator.lt: "<",
    operator.le: "<=",
    operator.gt: ">",
    operator.ge: ">=",
    operator.eq: "==",
    operator.ne: "!=",
    operator.and_: "&",
    operator.or_: "|",
    operator.xor: "^",
}
_UNOPS = {operator.neg: "-", operator.pos: "+", operator.invert: "~"}
_SIMPLE = (bool, int, str, type(None))


def _inplace_tables() -> tuple[set, set]:
    import ember
    import ember.nn.functional as F

    names = (
        "relu",
        "leaky_relu",
        "silu",
        "hardtanh",
        "relu6",
        "elu",
        "hardswish",
        "hardsigmoid",
        "mish",
        "selu",
        "celu",
    )
    activations = {getattr(F, n) for n in names if hasattr(F, n)}
    # ops whose result is a new array nobody else holds (not a view of an input)
    fresh = {
        getattr(F, n)
        for n in ("linear", "conv1d", "conv2d", "conv3d", "layer_norm", "batch_norm", "group_norm")
        if hasattr(F, n)
    }
    fresh |= {
        ember.matmul,
        ember.bmm,
        ember.mm,
        ember.addmm,
        operator.add,
        operator.sub,
        operator.mul,
        operator.matmul,
    }
    return activations, fresh


def plan_inplace(graph: Graph) -> dict[Node, dict]:
    """Activation nodes that may run in place (kwargs to use) when autograd is off."""
    import inspect

    activations, fresh = _inplace_tables()
    out: dict[Node, dict] = {}
    outputs = set()
    for n in graph.nodes:
        if n.op == "output":
            outputs.update(n.all_input_nodes)
    for n in graph.nodes:
        if n.op != "call_function" or n.target not in activations or not n.args:
            continue
        src = n.args[0]
        if (
            not isinstance(src, Node)
            or src.op != "call_function"
            or src.target not in fresh
            or len(src.users) != 1
            or src in outputs
        ):
            continue
        try:
            names = list(inspect.signature(n.target).parameters)
        except (TypeError, ValueError):
            continue
        # inplace given positionally (or already set): leave the call as written
        if (
            "inplace" not in names
            or len(n.args) > names.index("inplace")
            or n.kwargs.get("inplace", False) is not False
        ):
            continue
        out[n] = {**n.kwargs, "inplace": True}
    return out


class _Emitter:
    def __init__(self, root: Any) -> None:
        self.root = root
        self.globals: dict[str, Any] = {"__builtins__": builtins}
        self._ids: dict[int, str] = {}
        self.names: dict[Node, str] = {}

    def const(self, value: Any, hint: str = "k") -> str:
        key = id(value)
        name = self._ids.get(key)
        if name is None:
            name = f"_{hint}{len(self._ids)}"
            self._ids[key] = name
            self.globals[name] = value
        return name

    def arg(self, a: Any) -> str:
        if isinstance(a, Node):
            return self.names[a]
        if isinstance(a, tuple) and not hasattr(a, "_fields"):
            inner = ", ".join(self.arg(e) for e in a)
            return f"({inner},)" if len(a) == 1 else f"({inner})"
        if isinstance(a, list):
            return "[" + ", ".join(self.arg(e) for e in a) + "]"
        if isinstance(a, dict):
            return "{" + ", ".join(f"{k!r}: {self.arg(v)}" for k, v in a.items()) + "}"
        if isinstance(a, slice):
            return f"slice({self.arg(a.start)}, {self.arg(a.stop)}, {self.arg(a.step)})"
        if type(a) in _SIMPLE:
            return repr(a)
        if type(a) is float and a == a and a not in (float("inf"), float("-inf")):
            return repr(a)
        return self.const(a)

    def call_args(self, args: tuple, kwargs: dict) -> str:
        parts = [self.arg(a) for a in args]
        parts += [f"{k}={self.arg(v)}" for k, v in kwargs.items()]
        return ", ".join(parts)


def _resolve_attr(root: Any, path: str) -> Any:
    obj = root
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def build(
    graph: Graph, root: Any, inplace: dict[Node, dict] | None = None
) -> tuple[Callable, str, list[tuple[Any, str, Any]]]:
    """Compile ``graph`` to a function of its placeholders.

    Returns ``(fn, source, attr_guards)``; ``attr_guards`` lists ``(owner_dict, name, obj)`` for
    every parameter/buffer the code bound, so the caller can check they are still installed.
    """
    em = _Emitter(root)
    inplace = inplace or {}
    params: list[str] = []
    lines: list[str] = []
    attr_guards: list[tuple[Any, str, Any]] = []
    for i, n in enumerate(graph.nodes):
        var = f"v{i}_{n.name}"[:48]
        em.names[n] = var
        if n.op == "placeholder":
            params.append(var)
        elif n.op == "get_attr":
            obj = _resolve_attr(root, n.target)
            owner_path, _, leaf = n.target.rpartition(".")
            owner = _resolve_attr(root, owner_path) if owner_path else root
            registered = False
            for store in ("_parameters", "_buffers"):
                d = owner.__dict__.get(store)
                if d is not None and d.get(leaf) is obj:
                    attr_guards.append((d, leaf, obj))
                    registered = True
            if not registered and leaf.isidentifier() and owner.__dict__.get(leaf) is obj:
                # a plain tensor attribute, read per call as eager does: FSDP points these at
                # new views of its gathered storage every iteration
                lines.append(f"{var} = {em.const(owner, 'o')}.{leaf}")
            else:
                lines.append(f"{var} = {em.const(obj, 'a')}")
        elif n.op == "call_function":
            t = n.target
            kwargs = inplace.get(n, n.kwargs)
            if t in _BINOPS and len(n.args) == 2 and not kwargs:
                a, b = (em.arg(x) for x in n.args)
                lines.append(f"{var} = {a} {_BINOPS[t]} {b}")
            elif t in _UNOPS and len(n.args) == 1 and not kwargs:
                lines.append(f"{var} = {_UNOPS[t]}{em.arg(n.args[0])}")
            elif t is operator.getitem and len(n.args) == 2 and not kwargs:
                lines.append(f"{var} = {em.arg(n.args[0])}[{em.arg(n.args[1])}]")
            elif (
                t is builtins.getattr
                and len(n.args) == 2
                and isinstance(n.args[1], str)
                and n.args[1].isidentifier()
            ):
                lines.append(f"{var} = {em.arg(n.args[0])}.{n.args[1]}")
            else:
                fn = em.const(t, "f")
                lines.append(f"{var} = {fn}({em.call_args(n.args, kwargs)})")
        elif n.op == "call_method":
            self_arg = em.arg(n.args[0])
            rest = em.call_args(n.args[1:], n.kwargs)
            lines.append(f"{var} = {self_arg}.{n.target}({rest})")
        elif n.op == "call_module":
            mod = em.const(_resolve_attr(root, n.target), "m")
            lines.append(f"{var} = {mod}({em.call_args(n.args, n.kwargs)})")
        elif n.op == "output":
            lines.append(f"return {em.arg(n.args[0])}")
        else:  # pragma: no cover - Graph.lint rejects other opcodes
            raise RuntimeError(f"unknown node opcode {n.op!r}")
    body = "\n".join("    " + ln for ln in lines) or "    return None"
    source = f"def compiled_forward({', '.join(params)}):\n{body}\n"
    code = compile(source, "<ember.compile>", "exec")
    exec(code, em.globals)  # noqa: S102 - our own generated source, built from the graph
    return em.globals["compiled_forward"], source, attr_guards
