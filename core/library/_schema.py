"""Operator schemas: parsing ``"ns::name(Tensor(a!) x, int n=2, *, bool flag=False) -> Tensor"``
strings, and inferring one from a Python function's type hints (``custom_op``'s default).

A schema is the contract the rest of ``ember.library`` checks calls against: argument names,
types, defaults, which arguments the op writes into (``Tensor(a!)``) and what it returns.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Argument", "FunctionSchema", "parse_schema", "infer_schema", "split_qualname"]

# the schema language's base types (torch's names); ``T?`` is optional, ``T[]``/``T[N]`` a list
_BASE_TYPES = frozenset(
    "Tensor int SymInt float bool str Scalar ScalarType Device Layout MemoryFormat Generator "
    "Dimname Storage Stream Any".split()
)
_ARG_RE = re.compile(
    r"^(?P<type>[A-Za-z]+)(?P<alias>\([a-z][a-z0-9]*!?\))?(?P<eopt>\?)?(?P<list>\[\d*\])?(?P<opt>\?)?$"
)
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def split_qualname(qualname: str) -> tuple[str, str]:
    """``"mylib::op"`` -> ``("mylib", "op")``, with an error naming what is malformed."""
    if not isinstance(qualname, str) or qualname.count("::") != 1:
        raise ValueError(
            f"expected an operator name of the form 'namespace::name' (e.g. 'mylib::my_op'), "
            f"got {qualname!r}"
        )
    ns, name = qualname.split("::")
    for part, what in ((ns, "namespace"), (name, "operator name")):
        if not _NAME_RE.match(part):
            raise ValueError(f"invalid {what} {part!r} in {qualname!r}: use a Python identifier")
    if "." in name:
        raise ValueError(f"overload names are not supported in {qualname!r}")
    return ns, name


@dataclass
class Argument:
    """One argument (or return) of a schema."""

    name: str
    type: str  # the full type text: "Tensor", "int[]", "Tensor?", ...
    default: Any = inspect.Parameter.empty
    kwarg_only: bool = False
    is_write: bool = False  # "Tensor(a!)": the op mutates it
    alias: str = "a"  # the alias set's name ("a", "a3")

    @property
    def base(self) -> str:
        return _ARG_RE.match(self.type).group("type")

    @property
    def is_tensor_like(self) -> bool:
        return self.base == "Tensor"

    def __str__(self) -> str:
        t = self.type
        if self.is_write:
            t = t.replace("Tensor", f"Tensor({self.alias}!)", 1)
        s = f"{t} {self.name}" if self.name else t
        if self.default is not inspect.Parameter.empty:
            s += f"={_default_text(self.default)}"
        return s


@dataclass
class FunctionSchema:
    """A parsed schema: ``name`` is ``"ns::op"``; ``returns`` may be empty (``-> ()``)."""

    name: str
    arguments: list[Argument]
    returns: list[Argument] = field(default_factory=list)
    overload_name: str = ""

    @property
    def mutated_args(self) -> list[str]:
        return [a.name for a in self.arguments if a.is_write]

    def signature(self) -> inspect.Signature:
        params = []
        for a in self.arguments:
            kind = (
                inspect.Parameter.KEYWORD_ONLY
                if a.kwarg_only
                else inspect.Parameter.POSITIONAL_OR_KEYWORD
            )
            params.append(inspect.Parameter(a.name, kind, default=a.default))
        return inspect.Signature(params)

    def __str__(self) -> str:
        args, kw = [], False
        for a in self.arguments:
            if a.kwarg_only and not kw:
                args.append("*")
                kw = True
            args.append(str(a))
        rets = [str(r) for r in self.returns]
        ret = rets[0] if len(rets) == 1 else "(" + ", ".join(rets) + ")"
        return f"{self.name}({', '.join(args)}) -> {ret}"


def _default_text(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_default_text(e) for e in v) + "]"
    if isinstance(v, str):
        return f'"{v}"'
    from ember import dtype

    if isinstance(v, dtype):  # torch writes ScalarType d=float32
        return v.name
    return repr(v)


def _parse_default(text: str, type_: str) -> Any:
    text = text.strip()
    if text == "None":
        return None
    if text in ("True", "False"):
        return text == "True"
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_parse_default(e, type_) for e in inner.split(",")] if inner else []
    if text[:1] in "'\"" and text[-1:] == text[:1]:
        return text[1:-1]
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        pass
    if "[" in type_ and re.match(r"^-?\d+$", text):  # int[2] x=1 means [1, 1]
        return int(text)
    if type_.startswith("ScalarType"):
        from ember.backend.dtype import _NAMES

        name = text.rpartition(".")[2]  # float32 (torch's form) or torch.float32
        if name in _NAMES:
            return _NAMES[name]
    raise ValueError(f"cannot parse the default value {text!r} of type {type_!r}")


def _split_top(text: str) -> list[str]:
    """Split on commas outside brackets/parentheses."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return [p.strip() for p in out]


def _parse_type(text: str, where: str) -> tuple[str, bool, str]:
    m = _ARG_RE.match(text)
    if m is None or m.group("type") not in _BASE_TYPES:
        base = m.group("type") if m else text
        raise ValueError(
            f"unknown type {base!r} in {where}; known types: {', '.join(sorted(_BASE_TYPES))} "
            "(with ? for optional and [] for lists)"
        )
    alias = m.group("alias")
    is_write = bool(alias and alias.endswith("!)"))
    if alias and m.group("type") != "Tensor":
        raise ValueError(f"only Tensor arguments can carry an alias annotation, in {where}")
    if m.group("eopt") and not m.group("list"):
        clean = m.group("type") + "?"
    else:
        clean = m.group("type") + (m.group("eopt") or "") + (m.group("list") or "")
        clean += m.group("opt") or ""
    return clean, is_write, (alias or "(a)").strip("()!")


def parse_schema(schema: str, qualname: str | None = None) -> FunctionSchema:
    """Parse ``"(Tensor x, int n=2) -> Tensor"`` (the name optional when ``qualname`` is given)
    or a full ``"ns::op(...) -> ..."`` schema."""
    if not isinstance(schema, str):
        raise TypeError(f"schema must be a string, got {type(schema).__name__}")
    text = schema.strip()
    m = re.match(r"^(?P<name>[^(]*)\((?P<args>.*)\)\s*->\s*(?P<ret>.+)$", text, re.S)
    if m is None:
        raise ValueError(
            f"cannot parse schema {schema!r}: expected '[ns::name](<args>) -> <returns>'"
        )
    name = m.group("name").strip()
    overload = ""
    if name:
        if "." in name:
            name, overload = name.split(".", 1)
        if "::" not in name and qualname is not None:
            name = f"{qualname.split('::')[0]}::{name}"
        split_qualname(name)
    elif qualname is None:
        raise ValueError(f"schema {schema!r} has no operator name")
    else:
        name = qualname
    args: list[Argument] = []
    kw = False
    for piece in _split_top(m.group("args")):
        if piece == "*":
            kw = True
            continue
        decl, _, default_text = piece.partition("=")
        parts = decl.split()
        if len(parts) != 2:
            raise ValueError(f"cannot parse argument {piece!r} in schema {schema!r}")
        type_, is_write, alias = _parse_type(parts[0], f"schema {schema!r}")
        if not _NAME_RE.match(parts[1]):
            raise ValueError(f"invalid argument name {parts[1]!r} in schema {schema!r}")
        if any(a.name == parts[1] for a in args):
            raise ValueError(f"duplicate argument name {parts[1]!r} in schema {schema!r}")
        default = _parse_default(default_text, type_) if default_text else inspect.Parameter.empty
        args.append(Argument(parts[1], type_, default, kw, is_write, alias))
    ret_text = m.group("ret").strip()
    if ret_text.startswith("(") and ret_text.endswith(")"):
        ret_parts = _split_top(ret_text[1:-1])
    else:
        ret_parts = [ret_text]
    returns = []
    for piece in ret_parts:
        parts = piece.split()
        type_, _, _ = _parse_type(parts[0], f"the returns of schema {schema!r}")
        returns.append(Argument(parts[1] if len(parts) > 1 else "", type_))
    return FunctionSchema(name, args, returns, overload)


# ---- inference from type hints (custom_op without schema=) -----------------------------------
def _hint_type(hint: Any, where: str) -> str:
    from ember import Tensor, device, dtype

    simple = {
        Tensor: "Tensor",
        int: "SymInt",
        float: "float",
        bool: "bool",
        str: "str",
        dtype: "ScalarType",
        device: "Device",
    }
    if hint in simple:
        return simple[hint]
    origin = typing.get_origin(hint)
    targs = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in targs:
        rest = [t for t in targs if t is not type(None)]
        if len(rest) == 1:
            return _hint_type(rest[0], where) + "?"
        if set(rest) == {int, float, bool}:  # Optional[Union[int, float, bool]] (torchao)
            return "Scalar?"
    if origin in (typing.Union, types.UnionType) and set(targs) == {int, float, bool}:
        return "Scalar"
    if origin in (list, tuple, Sequence, typing.Sequence) and targs:
        elem = targs[0]
        if elem in (Tensor, int, float, bool):
            return simple[elem] + "[]"
        if elem == Tensor | None:  # equal to typing.Optional[Tensor] too
            return "Tensor?[]"
        if typing.get_origin(elem) in (typing.Union, types.UnionType) and set(
            typing.get_args(elem)
        ) == {int, float, bool}:
            return "Scalar[]"
    raise ValueError(
        f"custom_op could not infer a schema type for {where} ({hint!r}): annotate it with "
        "Tensor, int, float, bool, str, dtype, device, Optional[...] or Sequence[Tensor/int/"
        "float/bool], or pass schema="
    )


def infer_schema(
    fn: Callable, *, mutates_args: Sequence[str] | str = (), op_name: str | None = None
) -> str:
    """A schema string for ``fn`` from its type hints (``torch.library.infer_schema``)."""
    if mutates_args == "unknown":
        raise NotImplementedError("mutates_args='unknown' is not supported: list the names")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as e:  # a forward reference that does not resolve
        raise ValueError(f"custom_op could not read the type hints of {fn.__name__}: {e}") from e
    sig = inspect.signature(fn)
    mutates = set([mutates_args] if isinstance(mutates_args, str) else mutates_args)
    unknown = mutates - set(sig.parameters)
    if unknown:
        raise ValueError(
            f"mutates_args names {sorted(unknown)} that are not parameters of {fn.__name__}"
        )
    parts, kw = [], False
    for index, p in enumerate(sig.parameters.values()):
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise ValueError(f"custom_op does not support *args/**kwargs ({fn.__name__})")
        if p.name not in hints:
            raise ValueError(
                f"custom_op needs a type annotation for parameter {p.name!r} of {fn.__name__}"
            )
        t = _hint_type(hints[p.name], f"parameter {p.name!r} of {fn.__name__}")
        if p.name in mutates:
            if not t.startswith("Tensor"):
                raise ValueError(f"mutates_args: {p.name!r} is not a Tensor parameter")
            t = t.replace("Tensor", f"Tensor(a{index}!)", 1)  # torch's alias-set names
        if p.kind == p.KEYWORD_ONLY and not kw:
            parts.append("*")
            kw = True
        s = f"{t} {p.name}"
        if p.default is not p.empty:
            s += f"={_default_text(p.default)}"
        parts.append(s)
    ret = hints.get("return", inspect.Parameter.empty)
    if ret is inspect.Parameter.empty:
        raise ValueError(f"custom_op needs a return annotation on {fn.__name__} (-> None if none)")
    if ret is None or ret is type(None):
        ret_s = "()"
    elif typing.get_origin(ret) is tuple:
        ret_s = "(" + ", ".join(_hint_type(r, "the return") for r in typing.get_args(ret)) + ")"
    else:
        ret_s = _hint_type(ret, f"the return of {fn.__name__}")
    prefix = op_name or ""
    return f"{prefix}({', '.join(parts)}) -> {ret_s}"
