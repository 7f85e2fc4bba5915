"""The tracer under the script compiler, and how branches and loop bodies become subgraphs.

A branch or loop body is compiled into its own fx Graph on the same tracer (its ``graph`` is
swapped). Whatever the subgraph reads from outside — values of enclosing graphs, parameters
and buffers (``get_attr``) — is *lifted*: it becomes a placeholder of the subgraph and an
operand of the ``cond`` / ``while_loop`` node in the enclosing graph. Branches therefore close
over nothing, which keeps them serializable and lets passes treat them as pure functions.
"""

from __future__ import annotations

import contextlib
import operator
from typing import Any

from ember._higher_order import cond, while_loop
from ember.fx.graph import Graph
from ember.fx.graph_module import GraphModule
from ember.fx.node import Node, map_arg
from ember.fx.proxy import Proxy
from ember.fx.tracer import Tracer

from ._values import NORETURN, ScriptCompileError, Undefined, _const_eq, _is_leaf

__all__ = ["ScriptTracer", "dead_code"]


_QUANTIZED = ("ember.ao.nn.quantized", "ember.ao.nn.intrinsic.quantized")


def _is_builtin_module(m: Any) -> bool:
    return (type(m).__module__ or "").startswith("ember.")


class ScriptTracer(Tracer):
    """An fx Tracer that inlines every module (no ``call_module`` nodes) and hands modules
    written by users to the script compiler (their ``forward`` may hold control flow)."""

    def __init__(self, compiler) -> None:
        from ember.export._packed_rnn import packed_rnn
        from ember.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        # a traced module's packed-sequence nodes stay single nodes (export/_packed_rnn.py)
        super().__init__(autowrap_functions=(pack_padded_sequence, pad_packed_sequence, packed_rnn))
        self.compiler = compiler
        self._caches: dict[Graph, dict] = {}
        self.submods: dict[Graph, dict[str, GraphModule]] = {}
        self._counts: dict[tuple[Graph, str], int] = {}
        self._free: dict[Graph, dict] = {}
        self._attr_cache: dict[Graph, dict] = {}
        self.top: Graph | None = None
        self.origin: dict[Node, Node] = {}  # a lifted placeholder -> the value it stands for

    def is_leaf_module(self, m, module_qualified_name: str) -> bool:
        return False

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        # one get_attr cache per graph: a proxy must never leak into a sibling branch
        return super().getattr(attr, attr_val, self._caches.setdefault(self.graph, {}))

    def call_module(self, m, forward, args: tuple, kwargs: dict) -> Any:
        if not _is_builtin_module(m):
            return self.compiler.call_user_module(m, args, kwargs)
        if (type(m).__module__ or "").startswith(_QUANTIZED):  # int8 kernels on raw codes
            raise ScriptCompileError(
                f"cannot compile the quantized module {m._get_name()}: its int8 kernels run "
                "outside ember's graph ops. Keep it eager, script the float model, or export "
                "it with ember.onnx.export (QDQ ONNX for quantized Linear/Conv layers)"
            )
        # ember's own modules: compile their forward too (shape-dependent branches stay
        # branches); what the compiler cannot take is traced through as ember.fx does
        snap = self.snapshot()
        try:
            return self.compiler.call_user_module(m, args, kwargs)
        except ScriptCompileError:
            self.rollback(snap)
            return super().call_module(m, forward, args, kwargs)

    # ---- undoing a failed attempt --------------------------------------------------------
    def snapshot(self) -> tuple:
        g = self.graph
        return (
            g,
            {id(n) for n in g.nodes},
            set(self.submods.get(g, {})),
            set(self._free.get(g, {})),
            dict(self._caches.get(g, {})),
            dict(self._attr_cache.get(g, {})),
        )

    def rollback(self, snap: tuple) -> None:
        """Erase what was added to the current graph since ``snap``."""
        g, ids, subs, free, cache, attr_cache = snap
        for n in reversed(list(g.nodes)):
            if id(n) not in ids:
                for u in list(n.users):
                    if id(u) in ids:
                        raise ScriptCompileError("internal error: cannot undo a failed compilation")
                n.users.clear()
                g.erase_node(n)
        for name in set(self.submods.get(g, {})) - subs:
            del self.submods[g][name]
        for k in set(self._free.get(g, {})) - free:
            del self._free[g][k]
        self._caches[g] = cache
        self._attr_cache[g] = attr_cache

    # ---- graph switching ---------------------------------------------------------------
    @contextlib.contextmanager
    def on(self, graph: Graph):
        prev, self.graph = self.graph, graph
        try:
            yield graph
        finally:
            self.graph = prev

    def new_graph(self) -> Graph:
        return Graph(tracer_cls=type(self))

    def _fresh_name(self, graph: Graph, base: str) -> str:
        k = self._counts.get((graph, base), 0)
        self._counts[(graph, base)] = k + 1
        return f"{base}_{k}"

    # ---- lifting -------------------------------------------------------------------------
    def create_arg(self, a: Any) -> Any:
        # a value of an enclosing graph becomes a placeholder of this one (lifted)
        return map_arg(super().create_arg(a), self._localize)

    def create_node(
        self,
        kind: str,
        target: Any,
        args: tuple,
        kwargs: dict,
        name: str | None = None,
        type_expr: Any = None,
    ) -> Node:
        if (
            kind == "get_attr"
            and self.graph is not self.top
            and target not in self.submods.get(self.graph, {})
        ):
            return self._lifted(self.graph, ("attr", target), target.replace(".", "_"))
        return super().create_node(kind, target, args, kwargs, name, type_expr)

    def _localize(self, n: Node) -> Node:
        if n.graph is self.graph:
            return n
        return self._lifted(self.graph, ("node", n), n.name)

    def _lifted(self, g: Graph, key: tuple, name: str) -> Node:
        table = self._free.setdefault(g, {})
        k = (key[0], id(key[1]) if key[0] == "node" else key[1])
        if k not in table:
            # a placeholder's target is its parameter name in the generated code: a lifted
            # ``self.weight`` beside a lifted argument ``weight`` (e3nn's ``_get_weights``)
            # needs another one
            taken = {n.target for n in g.nodes if n.op == "placeholder"}
            stem, i = name, 1
            while name in taken:
                name, i = f"{stem}_{i}", i + 1
            first = next((n for n in g.nodes if n.op != "placeholder"), None)
            ctx = g.inserting_before(first) if first is not None else contextlib.nullcontext()
            with ctx:
                table[k] = (key, g.placeholder(name))
            if key[0] == "node":
                self.origin[table[k][1]] = self.origin.get(key[1], key[1])
        return table[k][1]

    def lift(self, graphs: list[Graph], parent: Graph) -> list[Node]:
        """Give ``graphs`` the same trailing placeholders for what any of them read from
        outside; return the matching operands, as nodes of ``parent``."""
        keys: dict = {}
        for g in graphs:
            for k, (key, _) in self._free.get(g, {}).items():
                keys.setdefault(k, key)
        for g in graphs:
            table = self._free.setdefault(g, {})
            for k, key in keys.items():
                if k not in table:
                    self._lifted(
                        g, key, key[1].name if key[0] == "node" else key[1].replace(".", "_")
                    )
            first = next(n for n in g.nodes if n.op != "placeholder")
            for k in keys:  # in one order in every graph
                first.prepend(table[k][1])
        operands = []
        with self.on(parent):
            cache = self._attr_cache.setdefault(parent, {})
            for key in keys.values():
                if key[0] == "node":
                    operands.append(self._localize(key[1]))
                else:
                    if key[1] not in cache:
                        cache[key[1]] = self.create_node("get_attr", key[1], (), {})
                    operands.append(cache[key[1]])
        return operands

    def install(self, graph: Graph, parent: Graph, base: str) -> Node:
        """Make ``graph`` a GraphModule submodule of ``parent``'s module; its get_attr node."""
        gm = GraphModule(dict(self.submods.get(graph, {})), graph, base)
        name = self._fresh_name(parent, base)
        self.submods.setdefault(parent, {})[name] = gm
        with self.on(parent):
            return self.create_node("get_attr", name, (), {})

    def outputs(self, graph: Graph, values: Any, single: bool = False) -> None:
        with self.on(graph):
            out = values if single else tuple(values)
            self.create_node("output", "output", (self.create_arg(out),), {})

    def results(self, node: Node, n: int) -> list[Proxy]:
        p = self.proxy(node)
        with self.on(node.graph):
            return [
                self.create_proxy("call_function", operator.getitem, (p, i), {}) for i in range(n)
            ]

    # ---- cond ----------------------------------------------------------------------------
    def emit_cond(self, pred: Any, g_t: Graph, v_t: Any, g_f: Graph, v_f: Any, what: str) -> Any:
        """``cond`` over two compiled branches whose results are ``v_t`` / ``v_f``;
        returns the merged value in the enclosing graph."""
        parent = self.graph
        pairs: list[tuple[Any, Any]] = []
        if v_t is NORETURN and v_f is NORETURN:
            tmpl = _one_sided(None, pairs, 0, what, g_t)
        elif v_t is NORETURN:
            tmpl = _one_sided(v_f, pairs, 1, what, g_f)
        elif v_f is NORETURN:
            tmpl = _one_sided(v_t, pairs, 0, what, g_t)
        else:
            tmpl = _merge(v_t, v_f, pairs, what)
        self.outputs(g_t, [a for a, _ in pairs])
        self.outputs(g_f, [b for _, b in pairs])
        for g in (g_t, g_f):
            dead_code(g, self.submods.get(g, {}))
        operands = self.lift([g_t, g_f], parent)
        t_node = self.install(g_t, parent, "true_graph")
        f_node = self.install(g_f, parent, "false_graph")
        with self.on(parent):
            node = self.create_node(
                "call_function",
                cond,
                (self.create_arg(pred), t_node, f_node, self.create_arg(tuple(operands))),
                {},
            )
        outs = self.results(node, len(pairs))
        return _build(tmpl, outs)

    def emit_while(self, g_c: Graph, g_b: Graph, init: list) -> list[Proxy]:
        parent = self.graph
        n_carried = len(init)
        for g in (g_c, g_b):
            dead_code(g, self.submods.get(g, {}))
        extra = self.lift([g_c, g_b], parent)
        c_node = self.install(g_c, parent, "cond_graph")
        b_node = self.install(g_b, parent, "body_graph")
        with self.on(parent):
            node = self.create_node(
                "call_function",
                while_loop,
                (c_node, b_node, self.create_arg(tuple(init)), self.create_arg(tuple(extra))),
                {},
            )
        return self.results(node, n_carried)


# ---- merging the two branches' values into one template + output pairs --------------------
class _Same:
    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Out:
    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


def _outputtable(v: Any) -> bool:
    return v is None or _is_leaf(v)


def _merge(a: Any, b: Any, pairs: list, what: str) -> Any:
    if a is b:
        return _Same(a)
    if isinstance(a, dict) and isinstance(b, dict) and what == "<env>":
        # the variables after an if: only names bound on both paths survive
        out = {}
        for k in a:
            if k not in b:
                out[k] = _Same(Undefined(f"'{k}' is not defined on every path of the if"))
                continue
            try:
                out[k] = _merge(a[k], b[k], pairs, k)
            except ScriptCompileError as e:
                out[k] = _Same(Undefined(str(e)))
        for k in b:
            if k not in a:
                out[k] = _Same(Undefined(f"'{k}' is not defined on every path of the if"))
        return (dict, out)
    if isinstance(a, (list, tuple)) and type(a) is type(b):
        if len(a) != len(b):
            raise ScriptCompileError(
                f"'{what}' is a {type(a).__name__} of length {len(a)} "
                f"in one branch and {len(b)} in the other"
            )
        return (type(a), [_merge(x, y, pairs, what) for x, y in zip(a, b)])
    if isinstance(a, dict) and isinstance(b, dict):
        if list(a) != list(b):
            raise ScriptCompileError(
                f"'{what}' has keys {list(a)} in one branch and {list(b)} in the other"
            )
        return (dict, {k: _merge(a[k], b[k], pairs, what) for k in a})
    if not isinstance(a, Proxy) and not isinstance(b, Proxy) and _const_eq(a, b):
        return _Same(a)
    if _outputtable(a) and _outputtable(b):
        pairs.append((a, b))
        return _Out(len(pairs) - 1)
    raise ScriptCompileError(
        f"'{what}' has different values in the two branches "
        f"({type(a).__name__} and {type(b).__name__}) that a graph "
        "cannot select between"
    )


def _one_sided(v: Any, pairs: list, side: int, what: str, graph: Graph) -> Any:
    """The branch on the other side always raises: its outputs are placeholders (None)."""
    if isinstance(v, dict) and what == "<env>":
        return (dict, {k: _one_sided(e, pairs, side, k, graph) for k, e in v.items()})
    if isinstance(v, (list, tuple)):
        return (type(v), [_one_sided(e, pairs, side, what, graph) for e in v])
    if isinstance(v, dict):
        return (dict, {k: _one_sided(e, pairs, side, what, graph) for k, e in v.items()})
    if isinstance(v, Proxy) and v.node.graph is graph:  # made in the branch: an output
        pairs.append((None, v) if side else (v, None))
        return _Out(len(pairs) - 1)
    # a compile-time constant (a number, a flag, a tensor attribute): the other branch
    # raises, so after the if it has this branch's value; keeping it constant lets later
    # ``if``s on it be decided while compiling
    return _Same(v)


def _build(tmpl: Any, outs: list) -> Any:
    if isinstance(tmpl, _Same):
        return tmpl.value
    if isinstance(tmpl, _Out):
        return outs[tmpl.index]
    kind, body = tmpl
    if kind is dict:
        return {k: _build(e, outs) for k, e in body.items()}
    return kind(_build(e, outs) for e in body)


def _impure(node: Node) -> bool:
    """A node dead-code elimination keeps: fx's side effects, plus a call writing its result
    into an ``out=`` tensor (linear_operator's scripted CG updates return nothing and work
    only through ``torch.mul(a, b, out=c)``, which TorchScript keeps as a mutation)."""
    if node.is_impure():
        return True
    return node.op in ("call_function", "call_method") and node.kwargs.get("out") is not None


def _has_effects(graph: Graph, subs: dict) -> bool:
    for n in graph.nodes:
        if n.op in ("placeholder", "output"):
            continue
        if _impure(n):
            return True
        if (
            n.op == "get_attr"
            and n.target in subs
            and _has_effects(
                subs[n.target].graph, {k: v for k, v in subs[n.target].named_children()}
            )
        ):
            return True
    return False


def dead_code(graph: Graph, subs: dict) -> None:
    """Erase unused pure nodes; a cond/while_loop whose subgraphs raise or assert stays."""
    for node in reversed(list(graph.nodes)):
        if node.users or _impure(node):
            continue
        if node.op == "call_function" and node.target in (cond, while_loop):
            mods = [
                subs.get(a.target)
                for a in node.args[:3]
                if isinstance(a, Node) and a.op == "get_attr"
            ]
            if any(m is not None and _has_effects(m.graph, dict(m.named_children())) for m in mods):
                continue
        graph.erase_node(node)
