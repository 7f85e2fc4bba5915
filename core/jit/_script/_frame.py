"""The script compiler's view of one function (``Frame``: its parsed source, globals and
closure names, and where a node is for error messages) and the operator tables its
expression evaluator (``_expr.py``, which re-exports these) uses.
"""

from __future__ import annotations

import ast
import inspect
import operator
import textwrap
import types
from typing import Any

from ._values import ScriptCompileError

__all__ = ["Frame"]

_BINOPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.MatMult: operator.matmul,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}
_INPLACE = {
    ast.Add: operator.iadd,
    ast.Sub: operator.isub,
    ast.Mult: operator.imul,
    ast.Div: operator.itruediv,
    ast.FloorDiv: operator.ifloordiv,
    ast.Mod: operator.imod,
    ast.Pow: operator.ipow,
    ast.MatMult: operator.imatmul,
    ast.BitAnd: operator.iand,
    ast.BitOr: operator.ior,
    ast.BitXor: operator.ixor,
}
_CMPOPS = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Invert: operator.invert}
_MAX_DEPTH = 64
_sources: dict[Any, tuple] = {}


class Frame:
    """One function being compiled: where its source is, and its global/closure names."""

    def __init__(self, fn: types.FunctionType) -> None:
        self.fn = fn
        self.globals = fn.__globals__
        self.nonlocals = inspect.getclosurevars(fn).nonlocals if fn.__closure__ else {}
        self.tree, self.filename, self.offset, self.lines = _parse(fn)

    def where(self, node) -> str:
        line = getattr(node, "lineno", None)
        if line is None:
            return f"\n  in {self.fn.__qualname__} ({self.filename})"
        line += self.offset
        src = (
            self.lines[line - self.offset - 1].strip()
            if 0 <= line - self.offset - 1 < len(self.lines)
            else ""
        )
        return f"\n  at {self.filename}:{line}, in {self.fn.__qualname__}: {src}"


def _parse(fn) -> tuple:
    code = fn.__code__
    if code in _sources:
        return _sources[code]
    try:
        src = inspect.getsource(fn)
        filename = inspect.getsourcefile(fn) or code.co_filename
    except (OSError, TypeError) as e:
        raise ScriptCompileError(
            f"cannot compile {fn.__qualname__}: its source is not "
            f"available ({e}); define it in a file"
        ) from e
    src = textwrap.dedent(src)
    tree = ast.parse(src)
    fdef = tree.body[0]
    if not isinstance(fdef, ast.FunctionDef):
        raise ScriptCompileError(
            f"cannot compile {fn.__qualname__}: ember.jit.script compiles "
            f"functions defined with 'def' ({filename}:"
            f"{code.co_firstlineno})"
        )
    out = (fdef, filename, code.co_firstlineno - 1, src.splitlines())
    _sources[code] = out
    return out
