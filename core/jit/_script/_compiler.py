"""The statement compiler: runs a function's AST over compile-time values, into an fx graph.

Expressions are evaluated by ``_Expr`` (``_expr.py``) on Proxies, so every tensor operation is
recorded by ember.fx's tracer. Statements are interpreted here: a condition known while
compiling (a Python constant, a module attribute, ``self.training``) picks its branch now, as
TorchScript does for constants; a condition on tensors or shapes becomes ``ember.cond`` over
two subgraphs. Loops over static iterables (``range(3)``, a ModuleList, ``zip`` of lists) are
unrolled; a loop whose trip count depends on tensor data becomes ``ember.while_loop``.

Work is a list of *items*: statements, plus markers the unrolling inserts (``_Bind`` for the
loop variable, ``_Next`` between iterations, ``_End`` after the loop). An ``if`` with a
``return``/``break``/``continue`` under a data-dependent condition takes the rest of the items
into both branches (each branch then runs to the function's end), which is how early returns
and breaks compile without jumps.
"""

from __future__ import annotations

import ast
from typing import Any

from ._expr import _Expr
from ._values import (
    NORETURN,
    RunTimeValueError,
    ScriptCompileError,
    copy_value,
    flatten,
    is_dynamic,
    same_spec,
    unflatten,
)

__all__ = ["Compiler"]

_MAX_UNROLL = 10_000


class _Bind:
    __slots__ = ("target", "value")

    def __init__(self, target: ast.expr, value: Any) -> None:
        self.target, self.value = target, value


class _Next:  # continue lands here
    __slots__ = ()


class _End:  # break lands after this
    __slots__ = ()


class _Set:
    """Assign a compile-time value to a hidden name (the counter of a dynamic range loop)."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: Any) -> None:
        self.name, self.value = name, value


def _escapes(stmts: list) -> bool:
    """Whether ``stmts`` hold a return, or a break/continue of an enclosing loop."""

    def visit(node, in_loop: bool) -> bool:
        if isinstance(node, ast.Return):
            return True
        if isinstance(node, (ast.Break, ast.Continue)):
            return not in_loop
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            return False
        inner = in_loop or isinstance(node, (ast.For, ast.While))
        return any(visit(c, inner) for c in ast.iter_child_nodes(node))

    return any(visit(s, False) for s in stmts)


def _assigned_names(stmts: list) -> list[str]:
    names: list[str] = []
    for s in stmts:
        for node in ast.walk(s):
            if (
                isinstance(node, ast.Name)
                and isinstance(node.ctx, ast.Store)
                and node.id not in names
            ):
                names.append(node.id)
    return names


class Compiler(_Expr):
    """Compiles one function body at a time (``run_function``) into the tracer's graph."""

    # ---- items -------------------------------------------------------------------------
    def run(self, items: list, env: dict, frame, allow_return: bool = True) -> Any:
        """Run ``items``; ``("return", value)`` when a return ends them, else ``None``."""
        items = list(items)
        unrolled: dict[int, int] = {}
        i = 0
        while i < len(items):
            it = items[i]
            i += 1
            if isinstance(it, _Bind):
                self.assign(it.target, it.value, env, frame)
                continue
            if isinstance(it, _Set):
                env[it.name] = it.value
                continue
            if isinstance(it, (_Next, _End)):
                continue
            try:
                res = self._statement(it, items, i, env, frame, allow_return, unrolled)
            except (ScriptCompileError, _Raise):
                raise
            except Exception as e:  # noqa: BLE001  (any failure: name the source line)
                raise ScriptCompileError(f"{type(e).__name__}: {e}{frame.where(it)}") from e
            if res is None:
                continue
            kind, val = res
            if kind == "return":
                return res
            if kind == "jump":
                i = val
            elif kind == "splice":
                items[i:i] = val
        return None

    def _statement(self, st, items, i, env, frame, allow_return, unrolled):
        if isinstance(st, ast.Return):
            if not allow_return:
                raise ScriptCompileError(
                    "'return' inside a loop whose trip count depends on "
                    "tensor data is not supported" + frame.where(st)
                )
            return ("return", self.eval(st.value, env, frame) if st.value else None)
        if isinstance(st, (ast.Break, ast.Continue)):
            stops = (_End,) if isinstance(st, ast.Break) else (_Next, _End)
            for j in range(i, len(items)):
                if isinstance(items[j], stops):
                    return ("jump", j + 1 if isinstance(st, ast.Break) else j)
            raise RunTimeValueError(
                f"'{type(st).__name__.lower()}' inside a loop whose trip "
                "count depends on tensor data is not supported" + frame.where(st)
            )
        if isinstance(st, ast.If):
            test = self.eval(st.test, env, frame)
            if not is_dynamic(test):
                return ("splice", st.body if test else st.orelse)
            if _escapes(st.body + st.orelse):
                rest = items[i:]
                ret = self.dynamic_if(
                    test, st.body + rest, st.orelse + rest, env, frame, allow_return, returns=True
                )
                return ("return", ret)
            self.dynamic_if(test, st.body, st.orelse, env, frame, allow_return, returns=False)
            return None
        if isinstance(st, ast.For):
            return self._for(st, env, frame)
        if isinstance(st, ast.While):
            test = self.eval(st.test, env, frame)
            if not is_dynamic(test):
                if not test:
                    return ("splice", st.orelse)
                n = unrolled[id(st)] = unrolled.get(id(st), 0) + 1
                if n > _MAX_UNROLL:
                    raise ScriptCompileError(
                        f"while loop unrolled more than {_MAX_UNROLL} "
                        "times at compile time" + frame.where(st)
                    )
                # the loop again after the body; a break skips past the _End
                return ("splice", [*st.body, _Next(), st, _End()])
            if _escapes(st.body):
                raise RunTimeValueError(
                    "'return'/'break'/'continue' inside a while loop "
                    "whose condition depends on tensor data is not "
                    "supported" + frame.where(st)
                )
            self.dynamic_loop(
                env,
                frame,
                st.body,
                lambda e: self.eval(st.test, e, frame),
                lambda e: self._run_loop_body(st.body, e, frame),
            )
            return None
        self.simple_statement(st, env, frame)
        return None

    # ---- if ------------------------------------------------------------------------------
    def dynamic_if(self, test, body, orelse, env, frame, allow_return, returns: bool):
        tr = self.tracer
        results = []
        for branch in (body, orelse):
            e = {k: copy_value(v) for k, v in env.items()}
            g = tr.new_graph()
            with tr.on(g):
                res = self._run_branch(branch, e, frame, allow_return)
            if returns:
                val = NORETURN if res is NORETURN else (res[1] if res else None)
            else:
                val = NORETURN if res is NORETURN else e
            results.append((g, val))
        (g_t, v_t), (g_f, v_f) = results
        merged = tr.emit_cond(test, g_t, v_t, g_f, v_f, "return value" if returns else "<env>")
        if returns:
            return merged
        if merged is not NORETURN:
            env.clear()
            env.update(merged)
        return None

    def _run_branch(self, items, env, frame, allow_return):
        try:
            return self.run(items, env, frame, allow_return)
        except _Raise:
            return NORETURN

    # ---- for -----------------------------------------------------------------------------
    def _for(self, st: ast.For, env: dict, frame):
        it = st.iter
        if (
            isinstance(it, ast.Call)
            and isinstance(it.func, ast.Name)
            and it.func.id == "range"
            and self.lookup("range", env, frame) is range
        ):
            args = [self.eval(a, env, frame) for a in it.args]
            if any(is_dynamic(a) for a in args):
                if _escapes(st.body) or st.orelse:
                    raise RunTimeValueError(
                        "'return'/'break'/'continue'/'else' in a for loop "
                        "whose range depends on tensor data is not "
                        "supported" + frame.where(st)
                    )
                self._dynamic_range(st, args, env, frame)
                return None
            values = list(range(*args))
        else:
            iterable = self.eval(it, env, frame)
            values = self.static_iter(iterable, frame, st)
        if len(values) > _MAX_UNROLL:
            raise ScriptCompileError(
                f"for loop of {len(values)} iterations is too long to unroll" + frame.where(st)
            )
        work: list = []
        for v in values:
            work += [_Bind(st.target, v), *st.body, _Next()]
        return ("splice", [*work, *st.orelse, _End()])

    def _dynamic_range(self, st, args, env, frame):
        start, stop, step = (
            (0, args[0], 1)
            if len(args) == 1
            else (args[0], args[1], args[2] if len(args) > 2 else 1)
        )
        if not is_dynamic(step) and step == 0:
            raise ScriptCompileError("range() arg 3 must not be zero" + frame.where(st))
        counter = f"$range{id(st)}"
        env[counter] = start
        negative = not is_dynamic(step) and step < 0

        def test(e):
            return e[counter] > stop if negative else e[counter] < stop

        def body(e):
            self.assign(st.target, e[counter], e, frame)
            self._run_loop_body(st.body, e, frame)
            e[counter] = e[counter] + step

        self.dynamic_loop(env, frame, st.body, test, body, extra_carried=[counter])
        env.pop(counter, None)

    # ---- while_loop ----------------------------------------------------------------------
    def _run_loop_body(self, body, env, frame):
        res = self.run(body, env, frame, allow_return=False)
        if res is not None:
            raise RunTimeValueError(
                "'return' inside a loop whose trip count depends on tensor data is not supported"
            )

    def dynamic_loop(self, env, frame, stmts, test_fn, body_fn, extra_carried=()):
        """``ember.while_loop`` carrying the variables ``stmts`` (the body) assign."""
        tr = self.tracer
        names = list(extra_carried)
        names += [n for n in _assigned_names(stmts) if n in env and n not in names]
        leaves: list = []
        spec = flatten({n: env[n] for n in names}, leaves)

        def fresh_env(g):
            e = {k: copy_value(v) for k, v in env.items()}
            with tr.on(g):
                phs = [
                    tr.proxy(tr.create_node("placeholder", f"carried_{k}", (), {}))
                    for k in range(len(leaves))
                ]
            e.update(unflatten(spec, phs))
            return e

        g_c = tr.new_graph()
        e = fresh_env(g_c)
        with tr.on(g_c):
            pred = test_fn(e)
        tr.outputs(g_c, pred, single=True)
        g_b = tr.new_graph()
        e = fresh_env(g_b)
        with tr.on(g_b):
            body_fn(e)
        new_leaves: list = []
        new_spec = flatten({n: e[n] for n in names}, new_leaves)
        if not same_spec(spec, new_spec):
            raise RunTimeValueError(
                f"a loop whose trip count depends on tensor data changes "
                f"the structure or type of {names} (for example a list "
                "grows); only tensors and numbers can change in it"
            )
        for k, v in env.items():  # containers mutated in place cannot be carried silently
            if k not in names and isinstance(v, (list, dict)):
                a, b = [], []
                if not same_spec(flatten(v, a), flatten(e[k], b)) or any(
                    x is not y for x, y in zip(a, b)
                ):
                    raise RunTimeValueError(
                        f"a loop whose trip count depends on tensor data "
                        f"mutates '{k}' in place; assign it instead"
                    )
        tr.outputs(g_b, new_leaves)
        outs = tr.emit_while(g_c, g_b, leaves)
        env.update(unflatten(spec, outs))

    # ---- simple statements ---------------------------------------------------------------
    def simple_statement(self, st, env, frame):
        if isinstance(st, ast.Assign):
            value = self.eval(st.value, env, frame)
            for t in st.targets:
                self.assign(t, value, env, frame)
        elif isinstance(st, ast.AnnAssign):
            if st.value is not None:
                self.assign(st.target, self.eval(st.value, env, frame), env, frame)
        elif isinstance(st, ast.AugAssign):
            target = st.target
            load = _as_load(target)
            cur = self.eval(load, env, frame)
            val = self.binop(st.op, cur, self.eval(st.value, env, frame), inplace=True)
            self.assign(target, val, env, frame)
        elif isinstance(st, ast.Expr):
            if isinstance(st.value, ast.Constant):  # docstrings
                return
            self.eval(st.value, env, frame)
        elif isinstance(st, ast.Pass):
            return
        elif isinstance(st, ast.Assert):
            test = self.eval(st.test, env, frame)
            msg = self.eval(st.msg, env, frame) if st.msg is not None else ""
            if is_dynamic(test):
                from ._runtime import script_assert

                self.tracer.create_proxy("call_function", script_assert, (test, str(msg)), {})
            elif not test:  # this path always fails: at run time, as in TorchScript
                self._always_fails(msg)
        elif isinstance(st, ast.Raise):
            self._raise(st, env, frame)
        elif isinstance(st, ast.Delete):
            for t in st.targets:
                if isinstance(t, ast.Name):
                    env.pop(t.id, None)
                else:
                    raise ScriptCompileError("del is only supported on names" + frame.where(st))
        else:
            raise ScriptCompileError(
                f"{type(st).__name__} statements are not supported by "
                "ember.jit.script" + frame.where(st)
            )

    def _always_fails(self, msg) -> None:
        """An assertion false while compiling (``torch._assert(self.flag, ...)`` in an exported
        method that is never called): the path raises AssertionError when it runs."""
        from ._runtime import raise_exception

        self.tracer.create_proxy("call_function", raise_exception, ("AssertionError", str(msg)), {})
        raise _Raise()

    def _raise(self, st, env, frame):
        from ._runtime import raise_exception

        msg = ""
        exc = st.exc
        if isinstance(exc, ast.Call):
            kind = exc.func.id if isinstance(exc.func, ast.Name) else "Exception"
            if exc.args:
                try:
                    arg = self.eval(exc.args[0], env, frame)
                except Exception:  # noqa: BLE001  (e.g. an f-string of run-time values)
                    arg = ast.unparse(exc.args[0])
                msg = arg if isinstance(arg, str) else ast.unparse(exc.args[0])
        else:
            kind = exc.id if isinstance(exc, ast.Name) else "Exception"
        self.tracer.create_proxy("call_function", raise_exception, (kind, msg), {})
        raise _Raise()

    def assign(self, target, value, env, frame):
        if isinstance(target, ast.Name):
            env[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            star = [k for k, e in enumerate(target.elts) if isinstance(e, ast.Starred)]
            if star:
                raise ScriptCompileError(
                    "starred assignment is not supported" + frame.where(target)
                )
            n = len(target.elts)
            if is_dynamic(value) and not isinstance(value, (list, tuple)):
                parts = [value[k] for k in range(n)]
            else:
                parts = list(value)
                if len(parts) != n:
                    raise ScriptCompileError(
                        f"cannot unpack {len(parts)} values into {n}" + frame.where(target)
                    )
            for t, v in zip(target.elts, parts):
                self.assign(t, v, env, frame)
        elif isinstance(target, ast.Subscript):
            obj = self.eval(target.value, env, frame)
            obj[self.eval(target.slice, env, frame)] = value
        elif isinstance(target, ast.Attribute):
            raise ScriptCompileError(
                f"assigning to attribute '{target.attr}' is not supported "
                "in a scripted function (module state is read-only)" + frame.where(target)
            )
        else:
            raise ScriptCompileError(
                f"cannot assign to {type(target).__name__}" + frame.where(target)
            )


class _Raise(Exception):
    """A ``raise`` was compiled: the rest of this path never runs."""


def _as_load(target):
    node = ast.parse(ast.unparse(target), mode="eval").body
    return ast.copy_location(node, target)
