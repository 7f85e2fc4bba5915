"""Guards on symbolic sizes: Python control flow on a size becomes a guard, not a graph break.

With symbolic sizes (``dynamic=True``, automatic dynamic, ``mark_dynamic``), ``x.size(0)`` is a
graph node. When Python needs its value (``if g.size(-2) > g.size(-1):``, ``range(n // 4)``,
``max(x.size(1), 8)``, ``if x.shape[0] % 2:``), torch.compile evaluates the expression on the
example's sizes, records a guard on the result and keeps one graph. This module does the same:

- :class:`SizeGuards` answers ``bool()``/``int()``/``index()`` of a size expression during the
  capture with its value on the call's own inputs and records ``(check, expected, text)``;
- a compiled entry keeps its guards; a later call whose sizes give another value misses and
  recompiles (``_frame.py``), so every graph is only ever run on sizes it was traced for.

A guard is re-evaluated per call from the call's arguments alone, so the sizes of
intermediate tensors are derived from the inputs' shapes by shape rules (``_size_expr.py``:
elementwise ops and broadcasting, casts, in-place methods, transposes, matmul, reductions
with ``dim``/``keepdim``). An expression those rules do not cover, or whose rule disagrees
with the value the traced nodes really give on the example, stays a graph break. Arithmetic
on sizes that only flows into shape arguments (``x.view(b, -1, s // 2)``) is never asked for
its value and stays symbolic, with no guard.
"""

from __future__ import annotations

import builtins
import operator
import threading
from collections.abc import Callable
from typing import Any

from ember.fx.node import Node
from ember.fx.proxy import Attribute, Proxy

from ._size_expr import _BIN, _UNARY, Env, NotGuardable, _expr, is_size_expr

__all__ = [
    "Guard",
    "NotGuardable",
    "SizeGuards",
    "SizeProxy",
    "check_guards",
    "drop_dead",
    "is_size_expr",
    "sym_min_max",
]

_NEGATED = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}


class Guard:
    """``check(env) == expected``, shown as ``text`` (torch's guard over the input sizes)."""

    __slots__ = ("check", "expected", "text", "duck")

    def __init__(self, check: Callable[[Env], Any], expected: Any, text: str, duck=None) -> None:
        self.check, self.expected, self.text = check, expected, text
        self.duck = duck  # duck sizing: the (argument, dim) that took an earlier dim's symbol

    def holds(self, env: Env) -> bool:
        try:
            return self.check(env) == self.expected
        except Exception:  # sizes the rules cannot combine (a broadcast that fails): a miss
            return False

    def __repr__(self) -> str:
        return f"Guard({self.text})"


def check_guards(guards: list[Guard], env: Env) -> Guard | None:
    """The first guard that ``env`` fails, or None when all hold."""
    for g in guards:
        if not g.holds(env):
            return g
    return None


class SizeGuards:
    """The guards one capture records; ``examples`` are the call's arguments by name."""

    def __init__(self, examples: Env, root: Any, tensor_methods: dict) -> None:
        from ._static import StaticShapes

        self.examples = examples
        self._static = StaticShapes(examples, root, tensor_methods)
        self.guards: list[Guard] = []
        self.nodes: list[Node] = []  # expression nodes a guard consumed (dead-code candidates)

    def value(self, node: Node, kind: type) -> Any:
        """``kind(node)`` (bool or int) on the example, guarded; raises NotGuardable."""
        fn, text = _expr(node)
        text = _bare(text)
        try:
            got = fn(self.examples)
        except Exception as e:
            raise NotGuardable(str(e)) from e
        true = self._static._value(node)  # the traced nodes, run on the example
        if true is not got and true != got:
            raise NotGuardable(f"shape rules disagree with the traced value of {text}")
        if kind is bool:
            out = bool(got)
            self.guards.append(
                Guard(lambda env, f=fn: bool(f(env)), out, _bool_text(node, text, out))
            )
        else:
            out = operator.index(got) if kind is int else float(got)
            self.guards.append(Guard(fn, got, f"{text} == {got!r}"))
        self.nodes.append(node)
        return out


def duck_guards(args: Env, symbolic: Callable[[Any], set[int]], own: set) -> list[Guard]:
    """torch's duck sizing: symbolic input sizes (>= 2) equal on this call share a symbol,
    which later calls must keep equal (``x.size(0) == y.size(0)``); sizes 0 and 1 are in the
    cache key instead (0/1 specialization). ``symbolic(t)``: the dims of ``t`` that are;
    ``own``: ``(argument, dim)`` pairs whose duck guard failed before: they keep their own
    symbol (what torch 2.13's recompiles show)."""
    from ember import Tensor

    first: dict[int, tuple[str, int]] = {}
    out = []
    for name, v in args.items():
        if not isinstance(v, Tensor):
            continue
        for d in sorted(symbolic(v)):
            n = v.shape[d]
            if n < 2 or (name, d) in own:
                continue
            if n not in first:
                first[n] = (name, d)
                continue
            a, da = first[n]

            def same(env: Env, a=a, da=da, b=name, db=d) -> bool:
                return env[a].shape[da] == env[b].shape[db]

            out.append(Guard(same, True, f"{name}.size({d}) == {a}.size({da})", (name, d)))
    return out


def drop_dead(graph: Any, nodes: list[Node]) -> None:
    """Erase guard expressions the graph itself never uses (torch's graph has none of them)."""
    todo = list(nodes)
    while todo:
        n = todo.pop()
        if n.graph is not graph or n.users or n.op not in ("call_function", "call_method"):
            continue
        if n.op == "call_function" and n.target not in _BIN and n.target not in _UNARY:
            if n.target not in (operator.getitem, builtins.getattr, builtins.min, builtins.max):
                continue
        if n.op == "call_method" and n.target not in ("size", "dim", "numel", "nelement"):
            continue
        inputs = n.all_input_nodes
        graph.erase_node(n)
        todo.extend(inputs)


def _bool_text(node: Node, text: str, value: bool) -> str:
    op = _BIN.get(node.target) if node.op == "call_function" else None
    if op in _NEGATED:
        if value:
            return text
        a, b = (_expr(x)[1] if isinstance(x, Node) else repr(x) for x in node.args)
        return f"{_bare(a)} {_NEGATED[op]} {_bare(b)}"
    return text if value else f"not ({text})"


def _bare(text: str) -> str:
    # "(a > b)" -> "a > b" when the outer parentheses enclose the whole text
    if text.startswith("(") and text.endswith(")"):
        depth = 0
        for i, ch in enumerate(text):
            depth += {"(": 1, ")": -1}.get(ch, 0)
            if depth == 0 and i < len(text) - 1:
                return text
        return text[1:-1]
    return text


class SizeProxy(Proxy):
    """A Proxy whose ``int()``/``index()`` a symbolic size expression answers with a guard."""

    def __index__(self) -> int:
        v = self.tracer._size_value(self, int)
        return super().__index__() if v is None else v

    def __int__(self) -> int:
        v = self.tracer._size_value(self, int)
        return super().__int__() if v is None else v

    def __float__(self) -> float:
        v = self.tracer._size_value(self, float)
        return super().__float__() if v is None else v


def sym_min_max(tracer: Any, orig: Callable) -> Callable:
    owner = threading.get_ident()

    def min_max(*args, **kwargs):
        if (
            not kwargs
            and len(args) > 1
            and threading.get_ident() == owner
            and any(isinstance(a, Proxy) for a in args)
            and all(isinstance(a, (int, float)) or _is_size(a) for a in args)
        ):
            return tracer.create_proxy("call_function", orig, args, {})
        return orig(*args, **kwargs)

    min_max.__name__ = orig.__name__
    return min_max


def input_meta(examples: Env, proxy: Any, what: str) -> Any:
    """An input's rank, dtype or device (the cache key guards them), or ``_NO_META``."""
    from ember import Tensor
    from ember.fx.proxy import _NO_META

    if isinstance(proxy, Attribute) or what not in ("dim", "ndim", "dtype", "device"):
        return _NO_META
    node = getattr(proxy, "node", None)
    v = examples.get(node.target.lstrip("*")) if node is not None else None
    if node is None or node.op != "placeholder" or not isinstance(v, Tensor):
        return _NO_META
    return v.dim() if what == "dim" else getattr(v, what)


def _is_size(a: Any) -> bool:
    return isinstance(a, Proxy) and not isinstance(a, Attribute) and is_size_expr(a.node)
