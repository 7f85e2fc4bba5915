"""Compile the ``code/`` files of a PyTorch TorchScript archive into Python classes and
functions.

TorchScript serializes each ``__torch__`` class and function as Python-syntax source
(``class Linear(Module): __parameters__ = [...]``, ``def forward(self, input: Tensor) ->
Tensor: return torch.linear(input, self.weight, self.bias)``). Each file is parsed with
``ast``, checked, rewritten (type annotations dropped; ``annotate(T, v)`` / ``unchecked_cast(T,
v)`` are ``v``; ``uninitialized(T)`` is ``None``) and its functions are compiled, with the
archive's file name and line numbers kept for tracebacks, to run against
``_torchscript_ops``' aten table. The code runs as TorchScript runs it: with the archive's
constants, its own classes and functions and a short list of builtins; no imports, no
``global``, no dunder attributes beyond TorchScript's own names.
"""

from __future__ import annotations

import ast
import builtins
import math
from typing import Any

from ember.tensor import Tensor

from ._torchscript_ops import OPS
from ._torchscript_prim import OpsNamespace, TorchNamespace

__all__ = ["Node", "compile_sources"]

# dunder names TorchScript code uses (TorchScript's own ops and the methods it compiles)
_DUNDERS = {
    "__torch__", "__is__", "__isnot__", "__not__", "__contains__", "__getitem__",
    "__setitem__", "__len__", "__init__", "__getstate__", "__setstate__", "__and__",
    "__or__", "__xor__", "__range_length", "__derive_index", "__parameters__", "__buffers__",
    "__annotations__", "__iter__", "__next__", "__eq__", "__hash__", "__str__", "__call__",
}  # fmt: skip


# attributes that reach interpreter internals (frames, globals) without a dunder name
_INTERNALS = {
    "gi_frame", "gi_code", "cr_frame", "ag_frame", "f_globals", "f_builtins", "f_back",
    "f_locals", "tb_frame", "tb_next", "co_code", "mro",
}  # fmt: skip


def _forbidden(name: str) -> bool:
    """A dunder name outside TorchScript's own (``__class__``, ``__globals__``...) or an
    interpreter internal; TorchScript's mangled names (``___torch_mangle_3``) are fine."""
    dunder = name.startswith("__") and name.endswith("__") and name not in _DUNDERS
    return dunder or name in _INTERNALS


class Node:
    """A package or module of the archive's ``__torch__`` tree (attributes: its classes,
    functions and sub-packages)."""

    def __init__(self, qualname: str) -> None:
        self.__dict__["_qualname"] = qualname

    def __getattr__(self, name: str):
        raise AttributeError(
            f"the TorchScript archive has no class or function {self._qualname}.{name} "
            "(its code/ folder is incomplete)"
        )

    def child(self, name: str) -> Node:
        node = self.__dict__.get(name)
        if not isinstance(node, Node):
            node = Node(f"{self._qualname}.{name}")
            self.__dict__[name] = node
        return node

    def resolve(self, qualname: str):
        obj = self
        for part in qualname.split(".")[1:]:
            obj = getattr(obj, part)
        return obj


def _safe_getattr(obj, name, *default):
    if _forbidden(name):
        raise AttributeError(f"TorchScript code may not read the attribute {name!r}")
    return getattr(obj, name, *default)


def _safe_hasattr(obj, name) -> bool:
    return not _forbidden(name) and hasattr(obj, name)


_TYPES = {
    "Tensor": Tensor, "int": int, "float": float, "bool": bool, "str": str,
    "List": list, "Tuple": tuple, "Dict": dict, "NoneType": type(None), "Device": object,
}  # fmt: skip


def _ts_isinstance(root: Node):
    def check(x, spec: str) -> bool:
        kinds = []
        for part in spec.strip("()").split(","):
            part = part.strip()
            if not part:
                continue
            head = part.split("[", 1)[0]
            if head == "Optional":
                if x is None:
                    return True
                head = part[len("Optional[") : -1].split("[", 1)[0]
            if head.startswith("__torch__."):
                kinds.append(root.resolve(head))
            elif head in _TYPES:
                kinds.append(_TYPES[head])
        return builtins.isinstance(x, tuple(kinds))

    return check


_BUILTINS = {
    name: getattr(builtins, name)
    for name in (
        "int float bool str range len print list tuple dict set min max abs enumerate zip "
        "round divmod sorted any all sum iter next reversed hash ord chr "
        "Exception ValueError RuntimeError TypeError IndexError KeyError AssertionError "
        "NotImplementedError StopIteration AttributeError ZeroDivisionError"
    ).split()
}
_BUILTINS.update(getattr=_safe_getattr, hasattr=_safe_hasattr)


class _Rewrite(ast.NodeTransformer):
    """Drop type annotations and TorchScript's type-only calls; refuse what TorchScript
    code never holds (imports, ``global``, dunder attributes outside TorchScript's names)."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def _refuse(self, node, what: str):
        raise RuntimeError(
            f"ember.jit.load: {self.filename}, line {getattr(node, 'lineno', '?')}: {what} is "
            "not TorchScript code (the archive is corrupted or was not written by torch.jit)"
        )

    def generic_visit(self, node):
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Global, ast.Nonlocal)):
            self._refuse(node, type(node).__name__.lower())
        if isinstance(node, (ast.AsyncFunctionDef, ast.Await, ast.Yield, ast.YieldFrom)):
            self._refuse(node, type(node).__name__)
        return super().generic_visit(node)

    def visit_Attribute(self, node):
        if _forbidden(node.attr):
            self._refuse(node, f"the attribute {node.attr!r}")
        return self.generic_visit(node)

    def visit_Name(self, node):
        if _forbidden(node.id):
            self._refuse(node, f"the name {node.id!r}")
        return node

    def visit_FunctionDef(self, node):
        for a in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            a.annotation = None
        for a in (node.args.vararg, node.args.kwarg):
            if a is not None:
                a.annotation = None
        node.returns = None
        node.decorator_list = []
        return self.generic_visit(node)

    def visit_Call(self, node):
        name = node.func.id if isinstance(node.func, ast.Name) else None
        if name in ("annotate", "unchecked_cast") and len(node.args) == 2:
            return self.visit(node.args[1])
        if name == "uninitialized":
            return ast.copy_location(ast.Constant(None), node)
        if name == "isinstance" and len(node.args) == 2:
            spec = ast.Constant(ast.unparse(node.args[1]))
            node.func = ast.copy_location(ast.Name("_ts_isinstance", ast.Load()), node.func)
            node.args = [self.visit(node.args[0]), ast.copy_location(spec, node.args[1])]
            return node
        return self.generic_visit(node)

    def visit_AnnAssign(self, node):
        if node.value is None:
            return None
        target = self.visit(node.target)
        return ast.copy_location(ast.Assign([target], self.visit(node.value)), node)


def _globals(root: Node, constants: Any, module_base: type) -> dict[str, Any]:
    consts = Node("CONSTANTS")
    for i, c in enumerate(constants or ()):
        consts.__dict__[f"c{i}"] = c
    return {
        "__builtins__": _BUILTINS,
        "torch": TorchNamespace(OPS),
        "ops": OpsNamespace(OPS),
        "__torch__": root,
        "CONSTANTS": consts,
        "math": math,
        "inf": math.inf,
        "nan": math.nan,
        "_ts_isinstance": _ts_isinstance(root),
        "Module": module_base,
    }


def _function(fdef: ast.FunctionDef, g: dict, filename: str):
    mod = ast.Module(body=[fdef], type_ignores=[])
    ns: dict[str, Any] = {}
    exec(compile(mod, filename, "exec"), g, ns)  # noqa: S102  (checked TorchScript code)
    return ns[fdef.name]


def _class_value(node: ast.AST, filename: str):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None  # a value TorchScript did not inline as a literal: not needed to run


def _class(cdef: ast.ClassDef, qualname: str, g: dict, filename: str, source: str, base: type):
    is_module = any(isinstance(b, ast.Name) and b.id == "Module" for b in cdef.bases)
    attrs: dict[str, Any] = {"__qualname__": qualname, "__module__": "ember.jit._torchscript"}
    attrs["__parameters__"], attrs["__buffers__"] = [], []
    for stmt in cdef.body:
        if isinstance(stmt, ast.FunctionDef):
            attrs[stmt.name] = _function(stmt, g, filename)
        elif isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
            if isinstance(target, ast.Name):
                attrs[target.id] = _class_value(stmt.value, filename)
        # other statements (__annotations__["0"] = ..., attribute types) only declare types
    attrs["_ts_source"] = ast.get_source_segment(source, cdef) or ""
    attrs["original_name"] = cdef.name
    cls = type(cdef.name, (base,) if is_module else (), attrs)
    cls._ts_is_module = is_module
    return cls


def compile_sources(
    sources: dict[str, str], constants: Any, module_base: type, archive: str
) -> Node:
    """Compile ``{"__torch__/torch/nn/modules/linear.py": text, ...}`` into a ``__torch__``
    tree of classes (Module classes derive from ``module_base``) and functions."""
    root = Node("__torch__")
    g = _globals(root, constants, module_base)
    for path in sorted(sources):
        text = sources[path]
        filename = f"{archive}/code/{path}"
        parts = path[: -len(".py")].split("/")
        if parts[0] != "__torch__":
            continue
        node = root
        for p in parts[1:]:
            node = node.child(p)
        try:
            tree = ast.parse(text, filename)
        except SyntaxError as e:
            raise RuntimeError(
                f"ember.jit.load: {filename} is not valid TorchScript code (line {e.lineno}: "
                f"{e.msg}): the archive is corrupted"
            ) from None
        for stmt in tree.body:
            if isinstance(stmt, ast.ClassDef):
                _Rewrite(filename).visit(stmt)
                qual = f"{node._qualname}.{stmt.name}"
                node.__dict__[stmt.name] = _class(stmt, qual, g, filename, text, module_base)
            elif isinstance(stmt, ast.FunctionDef):
                _Rewrite(filename).visit(stmt)
                node.__dict__[stmt.name] = _function(stmt, g, filename)
            elif isinstance(stmt, ast.Assign):
                _Rewrite(filename).visit(stmt)
                if len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
                    node.__dict__[stmt.targets[0].id] = _class_value(stmt.value, filename)
    return root
