"""Graph breaks split a compiled function into graphs (torch.compile's resume functions).

When the capture of a function (or a Module's ``forward``) breaks in a **top-level
statement** of its body, the body is split there with Python's ``ast`` (the source of
``inspect.getsource``, line numbers kept, the original globals and closure cells reused):

- the statements before it become a *prefix* function of the original parameters that
  returns ``(False, live)`` (the local values read later) or, where a ``return`` runs,
  ``(True, value)``; it is compiled as graph 1 with the normal capture and guards;
- the breaking statement runs eagerly in Python on ``live`` (a plain function, the same
  return convention);
- the statements after it become a *continuation* function of the values read later,
  compiled in turn. Its own breaks split it again, so ``n`` breaks give up to ``n + 1``
  graphs.

A top-level ``if`` whose capture breaks (a data-dependent condition such as
``if x.sum() > 0:``, or a break inside a branch) computes its condition as the last value of
the prefix graph, takes ``bool()`` of it in Python and compiles the chosen branch followed by
the rest of the body as a continuation, one per outcome.

Every piece is an ordinary :class:`~ember._compile._frame.CompiledFunction` sharing its
parent's ``entries`` and ``break_reasons`` (``explain`` reads them) with its own guards and
recompile limit, as torch's resume functions have their own code objects. The pieces run
ember ops, so autograd records one graph across them. Python scalars crossing a break (an
``.item()`` value read later) are arguments of the continuation: specialized on their value
first, graph inputs after one recompile (``_piece.py``), as torch's automatic dynamic.

Not split (the whole signature runs eagerly, as before; ``explain`` gives the reason): a
break inside a loop, ``with``, ``try`` or a nested function, inside a called helper function
or a comprehension, and functions whose source cannot be read or that use ``yield``,
``await``, ``global``/``nonlocal``, ``super()`` without arguments, ``*args``/``**kwargs`` or
private (name-mangled) names.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
import types
from pathlib import Path
from typing import Any

__all__ = ["CannotSplit", "Spec", "SplitRunner", "plan"]

_CORE_DIR = str(Path(__file__).resolve().parents[1])
_COND = "_ember_cond"
_COMPOUND = (
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Match,
    *((ast.TryStar,) if hasattr(ast, "TryStar") else ()),
)
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


class CannotSplit(Exception):
    """Why a graph break cannot split this function (the call signature then runs eagerly)."""


class Spec:
    """A function body that can be split: statements (with the original line numbers), the
    parameter names, and what the rebuilt functions need (globals, closure cells, file)."""

    def __init__(self, name, body, params, glb, cells, filename, code) -> None:
        self.name, self.body, self.params = name, body, params
        self.glb, self.cells, self.filename, self.code = glb, cells, filename, code
        self.bound_self: tuple = ()

    @classmethod
    def of(cls, fn: Any) -> Spec:
        """The spec of a user function (a Module's ``forward``), from its source."""
        code = getattr(fn, "__code__", None)
        if code is None:
            raise CannotSplit("not a Python function")
        if code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS):
            raise CannotSplit("the function takes *args or **kwargs")
        try:
            lines, start = inspect.getsourcelines(fn)
            tree = ast.parse(textwrap.dedent("".join(lines)))
        except (OSError, TypeError, SyntaxError) as e:
            raise CannotSplit(f"its source cannot be read ({type(e).__name__})") from None
        node = tree.body[0] if tree.body else None
        if not isinstance(node, ast.FunctionDef) or node.name != fn.__name__:
            raise CannotSplit("its source is not a plain def (a lambda?)")
        ast.increment_lineno(tree, start - 1)
        for n in ast.walk(node):
            bad = _refused(n)
            if bad:
                raise CannotSplit(f"the function uses {bad}")
        cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
        params = list(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])
        if "self" in params:  # fx's generated forward has its own ``self``: rename ours
            params[params.index("self")] = _SELF
            node.body = [_RenameSelf().visit(st) for st in node.body]
        return cls(fn.__name__, node.body, params, fn.__globals__, cells, code.co_filename, code)


_SELF = "_ember_self"


class _RenameSelf(ast.NodeTransformer):
    """``self`` -> ``_ember_self`` in the function's own scope (nested functions see it as a
    free variable, renamed with it; their own parameters named ``self`` are left alone)."""

    def visit_Name(self, node: ast.Name) -> ast.Name:
        if node.id == "self":
            node.id = _SELF
        return node

    def visit_FunctionDef(self, node: ast.AST) -> ast.AST:
        if any(a.arg == "self" for a in (*node.args.args, *node.args.kwonlyargs)):
            return node
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_Lambda = visit_FunctionDef


def _refused(n: ast.AST) -> str | None:
    if isinstance(n, (ast.Yield, ast.YieldFrom)):
        return "yield"
    if isinstance(n, ast.Await):
        return "await"
    if isinstance(n, (ast.Global, ast.Nonlocal)):
        return "global/nonlocal"
    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "super":
        if not n.args:
            return "super() without arguments"
    name = n.attr if isinstance(n, ast.Attribute) else n.id if isinstance(n, ast.Name) else ""
    if name.startswith("__") and not name.endswith("__"):
        return f"the private (name-mangled) name {name}"
    return None


# ---- where the break is ------------------------------------------------------------------------
def break_statement(exc: BaseException, spec: Spec) -> int:
    """The index of the top-level statement of ``spec.body`` where the capture broke."""
    line = None
    for e in (exc.__cause__, exc):
        frames = []
        tb = e.__traceback__ if e is not None else None
        while tb is not None:
            frames.append((tb.tb_frame.f_code, tb.tb_lineno))
            tb = tb.tb_next
        mine = [i for i, (c, _) in enumerate(frames) if c is spec.code]
        if not mine:
            continue
        line = frames[mine[-1]][1]
        for c, _ in frames[mine[-1] + 1 :]:
            if not c.co_filename.startswith(_CORE_DIR):
                where = "a comprehension" if c.co_name.startswith("<") else f"{c.co_name}()"
                raise CannotSplit(
                    f"the break is inside {where} ({c.co_filename}:{c.co_firstlineno}), "
                    "not in a top-level statement"
                )
        break
    if line is None:
        raise CannotSplit("the break is not in the function's own code")
    for i, s in enumerate(spec.body):
        if s.lineno <= line <= (s.end_lineno or s.lineno):
            if isinstance(s, _COMPOUND):
                kind = type(s).__name__.lower().removeprefix("async")
                raise CannotSplit(
                    f"the break (line {line}) is inside a `{kind}` statement; ember splits "
                    "only at top-level statements and `if`s"
                )
            return i
    raise CannotSplit(f"line {line} is not in a top-level statement of the body")


# ---- names -------------------------------------------------------------------------------------
def _loads(nodes: list[ast.AST]) -> set[str]:
    out = set()
    for top in nodes:
        for n in ast.walk(top):
            if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store):
                out.add(n.id)
            elif isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name):
                out.add(n.target.id)
    return out


def _stores(nodes: list[ast.AST]) -> set[str]:
    out = set()
    for top in nodes:
        for n in ast.walk(top):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                out.add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out.add(n.name)
            elif isinstance(n, (ast.Import, ast.ImportFrom)):
                out.update((a.asname or a.name).split(".")[0] for a in n.names)
            elif isinstance(n, ast.ExceptHandler) and n.name:
                out.add(n.name)
    return out


def _local_callables(body: list[ast.stmt]) -> set[str]:
    """Names bound to a function, lambda or class defined in ``body``."""
    out = set()
    for n in (n for top in body for n in ast.walk(top)):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(n.name)
        elif isinstance(n, (ast.Assign, ast.AnnAssign, ast.NamedExpr)):
            if any(isinstance(v, ast.Lambda) for v in ast.walk(n.value)):
                out |= _stores([n.target] if not isinstance(n, ast.Assign) else n.targets)
    return out


def _surely_bound(body: list[ast.stmt], params: list[str]) -> set[str]:
    """Names bound on every path through ``body`` (parameters, top-level assignments)."""
    out = set(params)
    for s in body:
        if isinstance(s, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and (
            not isinstance(s, ast.AnnAssign) or s.value is not None
        ):
            out |= _stores([s]) - _stores([v for v in ast.walk(s) if isinstance(v, ast.Lambda)])
        elif isinstance(s, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            out |= _stores([s])
    return out


class _TagReturns(ast.NodeTransformer):
    """``return e`` -> ``return (True, e)`` in this function's own scope."""

    def visit_Return(self, node: ast.Return) -> ast.Return:
        value = node.value or ast.Constant(None)
        new = ast.Return(ast.Tuple([ast.Constant(True), value], ast.Load()))
        return ast.copy_location(new, node)

    def _skip(self, node: ast.AST) -> ast.AST:
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = visit_ClassDef = _skip


def _tagged(body: list[ast.stmt], live: list[str], bound: set[str], at: ast.AST) -> list:
    import copy

    body = [_TagReturns().visit(copy.deepcopy(s)) for s in body]
    elts: list[ast.expr] = []
    for n in live:  # a name bound on some paths only: None where it is unbound
        if n in bound:
            elts.append(ast.Name(n, ast.Load()))
        else:
            get = ast.Attribute(ast.Call(ast.Name("locals", ast.Load()), [], []), "get", ast.Load())
            elts.append(ast.Call(get, [ast.Constant(n)], []))
    ret = ast.Return(ast.Tuple([ast.Constant(False), ast.Tuple(elts, ast.Load())], ast.Load()))
    return [*body, ast.copy_location(ret, at)]


def _function(spec: Spec, name: str, params: list[str], body: list[ast.stmt]):
    """A function of ``params`` running ``body`` with ``spec``'s globals and closure cells."""
    import copy

    args = ast.arguments(
        posonlyargs=[], args=[ast.arg(p) for p in params], kwonlyargs=[], kw_defaults=[],
        defaults=[],
    )  # fmt: skip
    inner = ast.FunctionDef(name, args, [copy.deepcopy(s) for s in body] or [ast.Pass()], [])
    outer_args = ast.arguments(
        posonlyargs=[], args=[ast.arg(c) for c in spec.cells], kwonlyargs=[], kw_defaults=[],
        defaults=[],
    )  # fmt: skip
    outer = ast.FunctionDef(
        "_ember_make", outer_args, [inner, ast.Return(ast.Name(name, ast.Load()))], []
    )
    mod = ast.Module([outer], [])
    ast.fix_missing_locations(mod)
    code = compile(mod, spec.filename, "exec")
    make = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    body_code = next(c for c in make.co_consts if isinstance(c, types.CodeType))
    closure = tuple(spec.cells[n] for n in body_code.co_freevars)
    fn = types.FunctionType(body_code, spec.glb, name, None, closure or None)
    fn.__qualname__ = name
    return fn


# ---- the split ---------------------------------------------------------------------------------
def plan(owner: Any, exc: BaseException) -> SplitRunner:
    """The runner of ``owner``'s call signature split at the break ``exc`` (or CannotSplit)."""
    spec = getattr(owner, "_resume_spec", None)
    if spec is None:
        from ember.nn import Module

        root = owner._root
        spec = Spec.of(type(root).forward if isinstance(root, Module) else root)
        if inspect.ismethod(root):  # ``compile(model.forward)``: ``self`` is bound already
            spec.bound_self = (root.__self__,)
        owner._resume_spec = spec
    return SplitRunner(owner, spec, break_statement(exc, spec))


class SplitRunner:
    """Runs one split call: prefix graph, the breaking statement in Python, continuation."""

    def __init__(self, owner: Any, spec: Spec, k: int) -> None:
        self._owner, self._spec, self._k = owner, spec, k
        body, stmt = spec.body, spec.body[k]
        self.line = stmt.lineno
        self._if = isinstance(stmt, ast.If)
        before = list(body[:k])
        if self._if:  # the condition is the prefix graph's last value
            cond = ast.Assign([ast.Name(_COND, ast.Store())], stmt.test)
            before.append(ast.copy_location(cond, stmt))
        rest = body[k:] if not self._if else [*body[k + 1 :], *stmt.body, *stmt.orelse]
        defined = set(spec.params) | _stores(before)
        self._live = sorted(_loads(rest) & defined)
        made = _local_callables(before) & set(self._live)
        if made:  # a closure made while tracing would hold the trace's values, not the call's
            raise CannotSplit(
                f"{', '.join(sorted(made))}, a function or class defined before the break, "
                "is used after it"
            )
        if self._if:
            self._live.append(_COND)
        self._prefix = None
        if before:
            pbody = _tagged(before, self._live, _surely_bound(before, spec.params), stmt)
            fn = _function(spec, spec.name, spec.params, pbody)
            self._prefix = self._child(fn, Spec(spec.name, pbody, spec.params, *self._ctx(fn)))
        self._index = {n: i for i, n in enumerate(spec.params)}
        # a Module root's call values omit ``self``: the pieces take it as a module argument
        self._self = (owner._root,) if owner._is_module else spec.bound_self
        self._conts: dict[Any, Any] = {}
        self._eager = None
        if not self._if:
            after = body[k + 1 :]
            self._out = sorted(_loads(after) & (set(self._live) | _stores([stmt])))
            bound = set(self._live) | _surely_bound([stmt], [])
            self._eager = _function(
                spec, f"{spec.name}_line_{self.line}", self._live,
                _tagged([stmt], self._out, bound, stmt),
            )  # fmt: skip

    def _ctx(self, fn: Any) -> tuple:
        s = self._spec
        return s.glb, s.cells, s.filename, fn.__code__

    def _child(self, fn: Any, spec: Spec) -> Any:
        from ._piece import PieceFunction

        o = self._owner
        cf = PieceFunction(fn, dynamic=o._dynamic, backend=o._backend, mode=o._mode)
        cf.entries, cf.break_reasons = o.entries, o.break_reasons  # one report (explain)
        cf._resume_spec, cf._piece = spec, True
        cf._stance_first_seen = True  # eager_then_compile: the parent's first call was eager
        return cf

    def _continuation(self, key: Any) -> Any:
        cf = self._conts.get(key)
        if cf is None:
            s, stmt = self._spec, self._spec.body[self._k]
            if self._if:
                params = self._live[:-1]
                body = [*(stmt.body if key else stmt.orelse), *s.body[self._k + 1 :]]
            else:
                params, body = self._out, s.body[self._k + 1 :]
            name = f"ember_resume_in_{s.name}_at_{self.line}"
            fn = _function(s, name, params, body)
            cf = self._conts[key] = self._child(fn, Spec(name, body, params, *self._ctx(fn)))
        return cf

    def __call__(self, *values: Any) -> Any:
        values = (*self._self, *values)
        if self._prefix is not None:
            done, live = self._prefix(*values)
            if done:
                return live
        else:
            live = tuple(values[self._index[n]] for n in self._live)
        if self._if:
            branch = bool(live[-1])
            return self._continuation(branch)(*live[:-1])
        done, out = self._eager(*live)
        if done:
            return out
        if self._k + 1 == len(self._spec.body):
            return None  # nothing after the break: the function falls off its end
        return self._continuation(None)(*out)

    def children(self) -> list[Any]:
        return [c for c in (self._prefix, *self._conts.values()) if c is not None]


def try_split(owner: Any, exc: BaseException) -> SplitRunner | None:
    """:func:`plan`, or None (the reason kept on ``exc.not_split``) where it cannot split."""
    try:
        return plan(owner, exc)
    except CannotSplit as why:
        exc.not_split = str(why)
        return None
