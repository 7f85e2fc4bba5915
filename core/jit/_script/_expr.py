"""Expressions for the script compiler (calls are in _calls.py, ``Frame`` in _frame.py).

Operators and ember calls on Proxies are recorded by ember.fx's tracer (its namespace patches
are active while a script compiles). What this file adds is what tracing alone cannot do:
``a if c else b`` / ``and`` / ``or`` on run-time values become ``ember.cond``; ``x is None`` on
an input becomes a run-time test; calls to functions and methods written by users are
compiled from their source (their control flow stays control flow) unless marked
``@ember.jit.ignore`` / ``@ember.jit.unused``.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import operator
import types
from typing import Any

from ember.fx.proxy import Proxy

from ._calls import _Calls, modifier
from ._frame import (  # noqa: F401  (Frame and the tables re-exported)
    _BINOPS,
    _CMPOPS,
    _INPLACE,
    _MAX_DEPTH,
    _UNARY,
    Frame,
    _parse,
    _sources,
)
from ._values import RunTimeValueError, ScriptCompileError, Undefined, is_dynamic

__all__ = ["Frame"]


class _Expr(_Calls):
    """Expression evaluation over compile-time values (mixed into the Compiler)."""

    def __init__(self, tracer) -> None:
        self.tracer = tracer
        self.depth = 0
        self._env_stack: list[dict] = []

    # ---- functions -----------------------------------------------------------------------
    def run_function(self, fn: types.FunctionType, args: tuple, kwargs: dict) -> Any:
        """Compile a call of ``fn`` inline; return its (compile-time) result."""
        from ._compiler import _Raise

        frame = Frame(fn)
        try:
            bound = inspect.signature(fn).bind(*args, **kwargs)
        except TypeError as e:
            raise ScriptCompileError(f"{fn.__qualname__}(): {e}{frame.where(frame.tree)}") from None
        bound.apply_defaults()
        env = dict(bound.arguments)
        self._env_stack.append(env)
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ScriptCompileError(
                f"{fn.__qualname__}: recursive functions are not supported"
                f" by ember.jit.script{frame.where(frame.tree)}"
            )
        try:
            res = self.run(frame.tree.body, env, frame)
        except _Raise:
            raise
        finally:
            self.depth -= 1
            self._env_stack.pop()
        return res[1] if res else None

    def call_user_module(self, m, args: tuple, kwargs: dict) -> Any:
        fwd = type(m).forward
        mod = modifier(fwd)
        if mod in ("ignore", "unused"):
            raise ScriptCompileError(
                f"{type(m).__name__}.forward is marked @{mod}: a scripted model cannot call it"
            )
        return self.run_function(fwd, (m, *args), kwargs)

    def lookup(self, name: str, env: dict, frame: Frame) -> Any:
        if name in env:
            v = env[name]
            if isinstance(v, Undefined):
                raise ScriptCompileError(v.why)
            return v
        if name in frame.nonlocals:
            return frame.nonlocals[name]
        if name in frame.globals:
            return frame.globals[name]
        if hasattr(builtins, name):
            return getattr(builtins, name)
        raise ScriptCompileError(f"undefined value {name}")

    # ---- expressions ---------------------------------------------------------------------
    def eval(self, node: ast.expr, env: dict, frame: Frame) -> Any:
        meth = getattr(self, "_e_" + type(node).__name__, None)
        if meth is None:
            raise ScriptCompileError(
                f"{type(node).__name__} expressions are not supported by "
                "ember.jit.script" + frame.where(node)
            )
        return meth(node, env, frame)

    def _e_Constant(self, node, env, frame):
        return node.value

    def _e_Name(self, node, env, frame):
        return self.lookup(node.id, env, frame)

    def _e_Attribute(self, node, env, frame):
        return getattr(self.eval(node.value, env, frame), node.attr)

    def _e_Subscript(self, node, env, frame):
        obj = self.eval(node.value, env, frame)
        return obj[self.eval(node.slice, env, frame)]

    def _e_Slice(self, node, env, frame):
        return slice(
            *(
                self.eval(p, env, frame) if p is not None else None
                for p in (node.lower, node.upper, node.step)
            )
        )

    def _e_Tuple(self, node, env, frame):
        return tuple(self._elts(node.elts, env, frame))

    def _e_List(self, node, env, frame):
        return self._elts(node.elts, env, frame)

    def _elts(self, elts, env, frame) -> list:
        out = []
        for e in elts:
            if isinstance(e, ast.Starred):
                out.extend(self.static_iter(self.eval(e.value, env, frame), frame, e))
            else:
                out.append(self.eval(e, env, frame))
        return out

    def _e_Dict(self, node, env, frame):
        out = {}
        for k, v in zip(node.keys, node.values):
            if k is None:
                out.update(self.eval(v, env, frame))
            else:
                out[self.eval(k, env, frame)] = self.eval(v, env, frame)
        return out

    def _e_JoinedStr(self, node, env, frame):
        parts = []
        for v in node.values:
            val = self.eval(v.value if isinstance(v, ast.FormattedValue) else v, env, frame)
            if is_dynamic(val):
                raise ScriptCompileError(
                    "an f-string of a run-time value is not supported" + frame.where(node)
                )
            parts.append(str(val))
        return "".join(parts)

    def binop(self, op: ast.operator, a: Any, b: Any, inplace: bool = False) -> Any:
        # tensors stay functional (x += y records an add), Python lists extend in place
        if inplace and not isinstance(a, Proxy) and not is_dynamic(b) and type(op) in _INPLACE:
            return _INPLACE[type(op)](a, b)
        return _BINOPS[type(op)](a, b)

    def _e_BinOp(self, node, env, frame):
        return self.binop(
            node.op, self.eval(node.left, env, frame), self.eval(node.right, env, frame)
        )

    def _e_UnaryOp(self, node, env, frame):
        v = self.eval(node.operand, env, frame)
        if isinstance(node.op, ast.Not):
            if isinstance(v, Proxy):
                return self.tracer.create_proxy("call_function", operator.not_, (v,), {})
            return not v
        return _UNARY[type(node.op)](v)

    def _e_Compare(self, node, env, frame):
        left = self.eval(node.left, env, frame)
        result = True
        for op, comp in zip(node.ops, node.comparators):
            right = self.eval(comp, env, frame)
            r = self._compare(op, left, right)
            result = r if result is True else self._select_and(result, r)
            if result is False:
                return False
            left = right
        return result

    def _compare(self, op, a, b):
        if isinstance(op, (ast.Is, ast.IsNot)):
            dyn = [
                v
                for v in (a, b)
                if isinstance(v, Proxy) and (self._is_input(v.node) or self._maybe_none(v.node))
            ]
            if dyn and (a is None or b is None):  # an Optional input: test when it runs
                fn = operator.is_ if isinstance(op, ast.Is) else operator.is_not
                return self.tracer.create_proxy("call_function", fn, (a, b), {})
            return (a is b) if isinstance(op, ast.Is) else (a is not b)
        if (
            isinstance(op, (ast.In, ast.NotIn))
            and isinstance(a, Proxy)
            and isinstance(b, (tuple, list))
            and not is_dynamic(b)
        ):
            # x.dim() in (2, 3): any of the equalities, when the element is a run-time value
            hits = [operator.eq(a, e) for e in b]
            if not hits:
                return isinstance(op, ast.NotIn)
            res = hits[0]
            for h in hits[1:]:
                res = operator.or_(res, h)
            if isinstance(op, ast.NotIn):
                return self.tracer.create_proxy("call_function", operator.not_, (res,), {})
            return res
        return _CMPOPS[type(op)](a, b)

    def _maybe_none(self, node) -> bool:
        """Whether ``node`` is a result of an ``ember.cond`` that one branch sets to None
        (an Optional that the test must check when the graph runs)."""
        from ember._higher_order import cond

        node = self.tracer.origin.get(node, node)
        if node.op != "call_function" or node.target is not operator.getitem:
            return False
        src, idx = node.args[0], node.args[1]
        if getattr(src, "target", None) is not cond or not isinstance(idx, int):
            return False
        subs = self.tracer.submods.get(src.graph, {})
        for branch in src.args[1:3]:
            gm = subs.get(getattr(branch, "target", None))
            out = next((n for n in gm.graph.nodes if n.op == "output"), None) if gm else None
            vals = out.args[0] if out is not None else None
            if isinstance(vals, (tuple, list)) and idx < len(vals) and vals[idx] is None:
                return True
        return False

    def _is_input(self, node) -> bool:
        """Whether ``node`` is (or was lifted from) an input of the compiled function."""
        node = self.tracer.origin.get(node, node)
        return node.op == "placeholder" and node.graph is self.tracer.top

    def _select_and(self, a, b):
        if isinstance(a, Proxy) or isinstance(b, Proxy):
            return self.tracer.create_proxy("call_function", operator.and_, (a, b), {})
        return a and b

    def _e_BoolOp(self, node, env, frame):
        is_and = isinstance(node.op, ast.And)
        value = self.eval(node.values[0], env, frame)
        for k in range(1, len(node.values)):
            if not isinstance(value, Proxy):
                if bool(value) != is_and:  # short-circuit now
                    return value
                value = self.eval(node.values[k], env, frame)
                continue
            # a run-time value: `a and b` is `b if a else a`, `a or b` is `a if a else b`
            tail = (
                ast.BoolOp(op=node.op, values=node.values[k:])
                if len(node.values) - k > 1
                else node.values[k]
            )
            ast.copy_location(tail, node)

            def other(e, tail=tail):
                return self.eval(tail, e, frame)

            def same(e, cur=value):
                return cur

            return self.select(
                value, other if is_and else same, same if is_and else other, env, frame
            )
        return value

    def _e_IfExp(self, node, env, frame):
        test = self.eval(node.test, env, frame)
        if not isinstance(test, Proxy):
            return self.eval(node.body if test else node.orelse, env, frame)
        return self.select(
            test,
            lambda e: self.eval(node.body, e, frame),
            lambda e: self.eval(node.orelse, e, frame),
            env,
            frame,
        )

    def select(self, test, fn_t, fn_f, env, frame):
        """``fn_t(env) if test else fn_f(env)`` with ``test`` known only at run time."""
        tr = self.tracer
        vals = []
        for fn in (fn_t, fn_f):
            g = tr.new_graph()
            with tr.on(g):
                vals.append((g, fn(env)))
        (g_t, v_t), (g_f, v_f) = vals
        v_t, v_f = self._spread(v_t, v_f, g_t), self._spread(v_f, v_t, g_f)
        try:
            return tr.emit_cond(test, g_t, v_t, g_f, v_f, "conditional expression")
        except ScriptCompileError as e:
            # e.g. two strings picked by a run-time test for an error message: the value
            # only fails when something reads it (a raise then keeps its source text)
            return Undefined(str(e))

    def _spread(self, v, other, graph):
        """``v``, an input typed as a tuple, as a tuple of its items (read in ``graph``) when
        the other branch gives a tuple of that length: ``(None, None) if hx is None else hx``."""
        from ._calls import _tuple_arity

        if (
            isinstance(v, Proxy)
            and isinstance(other, tuple)
            and _tuple_arity(self.tracer, v) == len(other)
        ):
            with self.tracer.on(graph):
                return tuple(v[i] for i in range(len(other)))
        return v

    def _e_ListComp(self, node, env, frame):
        return self._comprehension(node, env, frame, lambda e: [self.eval(node.elt, e, frame)])

    _e_GeneratorExp = _e_ListComp

    def _e_DictComp(self, node, env, frame):
        pairs = self._comprehension(
            node,
            env,
            frame,
            lambda e: [(self.eval(node.key, e, frame), self.eval(node.value, e, frame))],
        )
        return dict(pairs)

    def _comprehension(self, node, env, frame, make) -> list:
        out: list = []

        def gen(k, e):
            if k == len(node.generators):
                out.extend(make(e))
                return
            g = node.generators[k]
            for v in self.static_iter(self.eval(g.iter, e, frame), frame, g.iter):
                inner = dict(e)
                self.assign(g.target, v, inner, frame)
                conds = [self.eval(c, inner, frame) for c in g.ifs]
                if any(is_dynamic(c) for c in conds):
                    raise ScriptCompileError(
                        "a comprehension filter on a run-time value is not"
                        " supported" + frame.where(node)
                    )
                if all(conds):
                    gen(k + 1, inner)

        gen(0, env)
        return out

    def static_iter(self, v: Any, frame: Frame, node) -> list:
        if isinstance(v, Proxy):
            raise RunTimeValueError(
                "cannot iterate over a value known only at run time (a "
                "tensor or a shape); iterate over range(x.size(0)) and "
                "index instead" + frame.where(node)
            )
        return list(v)
