"""NumPy's argument names on PyTorch's functions and methods.

PyTorch's argument parser takes NumPy's spellings for two parameters on every native function
and method: ``axis`` for ``dim`` and ``keepdims`` for ``keepdim`` (``x.std(axis=0,
keepdims=True)``, ``torch.cat(ts, axis=1)``, ``x.unsqueeze(axis=0)``, ``x.gather(axis=1,
index=i)``). Code written by NumPy users relies on it, so ember accepts them wherever a
function or method has a ``dim``/``keepdim`` parameter and no parameter of the alias's name.

Two shapes of wrapper carry the aliases:

- the generic ``*args, **kwargs`` wrappers (``out=``, autocast, ``__torch_function__``) rename
  keywords with :func:`renamer`, which costs one test of ``kwargs`` per call;
- plain functions and Tensor methods get a wrapper generated with their own signature
  (:func:`with_numpy_names`; the same emitter serves ``_torch_function.namespace_dispatch``):
  ``dim`` and ``keepdim`` default to a sentinel, the aliases are keyword-only parameters, and
  a call without them pays two identity tests. The wrapper reports the function's own
  signature (``__signature__``), so help() and the docs show PyTorch's.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable

__all__ = ["ALIASES", "Plan", "plan", "renamer", "with_numpy_names", "install_methods"]

#: (alias, real parameter) pairs, as torch's ``python_arg_parser`` maps them
ALIASES = (("axis", "dim"), ("keepdims", "keepdim"))

_EMPTY = inspect.Parameter.empty
# the generated wrappers' own global names
_RESERVED = frozenset({"_fn", "_NA", "_both"})


class _Missing:
    """The default of a parameter that may come under its alias instead."""

    def __repr__(self) -> str:
        return "_NA"


NA = _Missing()


def _both(name: str, real: str, alias: str):
    raise TypeError(f"{name}() got both {real!r} and its alias {alias!r}")


def renamer(fn: Callable, name: str | None = None) -> Callable | None:
    """A ``rename(kwargs) -> kwargs`` mapping the aliases ``fn`` lacks onto its parameters, or
    None when it lacks none (no ``dim``/``keepdim``, or no signature)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return None
    pairs = tuple((a, r) for a, r in ALIASES if r in params and a not in params)
    if not pairs:
        return None
    name = name or getattr(fn, "__name__", "function")

    def rename(kwargs: dict) -> dict:
        for alias, real in pairs:
            if alias in kwargs:
                if real in kwargs:
                    _both(name, real, alias)
                kwargs[real] = kwargs.pop(alias)
        return kwargs

    return rename


class Plan:
    """How a signature takes the aliases: ``pairs`` (alias, real), the real parameters that
    were required (``required``), and each real parameter's own default."""

    def __init__(self, pairs, required, defaults) -> None:
        self.pairs = pairs
        self.required = required
        self.defaults = defaults


def plan(params: list[inspect.Parameter]) -> Plan | None:
    """The aliases a parameter list can take, or None: none missing, or a shape the generated
    wrapper does not reproduce (``*args``/``**kwargs``/positional-only parameters)."""
    names = {p.name for p in params}
    pairs = tuple((a, r) for a, r in ALIASES if r in names and a not in names)
    if not pairs or any(
        p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY) for p in params
    ):
        return None
    reals = {r for _, r in pairs}
    required, defaults, seen = [], {}, False
    for p in params:
        if p.name in reals:
            seen = True
            if p.default is _EMPTY:
                required.append(p.name)
            else:
                defaults[p.name] = p.default
        elif seen and p.default is _EMPTY and p.kind is p.POSITIONAL_OR_KEYWORD:
            # a required parameter after a real one becomes optional in the generated
            # signature (Python needs defaults after the first default); the body checks it
            required.append(p.name)
    return Plan(pairs, required, defaults)


def shown(params: list[inspect.Parameter], pl: Plan, ref: Callable) -> list:
    """``params`` as the generated ``def`` spells them: the real and later required parameters
    default to ``_NA``, the aliases follow as keyword-only parameters (``ref(obj)`` names a
    default object in the wrapper's globals)."""
    out = []
    na = set(pl.required) | set(pl.defaults)
    for p in params:
        out.append(p.replace(default=ref(NA)) if p.name in na else p)
    out.extend(
        inspect.Parameter(a, inspect.Parameter.KEYWORD_ONLY, default=ref(NA)) for a, _ in pl.pairs
    )
    return out


def prologue(pl: Plan, name: str, ref: Callable, call: str, indent: str = "    ") -> str:
    """Source lines that resolve the aliases and restore defaults; a call missing a required
    argument makes ``call`` with the given ones only, so Python words the error."""
    lines = []
    for alias, real in pl.pairs:
        lines += [
            f"if {alias} is not _NA:",
            f"    if {real} is not _NA:",
            f"        _both({name!r}, {real!r}, {alias!r})",
            f"    {real} = {alias}",
        ]
    for real, default in pl.defaults.items():
        lines.append(f"if {real} is _NA:\n{indent}    {real} = {ref(default)}")
    if pl.required:
        test = " or ".join(f"{r} is _NA" for r in pl.required)
        lines.append(f"if {test}:\n{indent}    return {call}")
    return "".join(f"{indent}{line}\n" for line in lines)


def given_call(params: list[inspect.Parameter]) -> str:
    """A call of ``_fn`` with only the arguments given (by keyword)."""
    items = ", ".join(f"{p.name!r}: {p.name}" for p in params)
    return f"_fn(**{{k: v for k, v in {{{items}}}.items() if v is not _NA}})"


class _Refs:
    """Default objects by generated name, for the wrapper's globals."""

    def __init__(self, namespace: dict) -> None:
        self.namespace = namespace

    def __call__(self, obj) -> _Ref:
        if obj is NA:
            return _Ref("_NA")
        key = f"_n{len(self.namespace)}"
        self.namespace[key] = obj
        return _Ref(key)


class _Ref:
    """A default shown by name in the generated ``def`` line."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def helpers() -> tuple[dict, _Refs]:
    """A fresh globals dict for a generated wrapper, and its default-naming function."""
    ns = {"_NA": NA, "_both": _both}
    return ns, _Refs(ns)


def with_numpy_names(fn: Callable, name: str | None = None) -> Callable:
    """``fn`` taking ``axis``/``keepdims`` for its ``dim``/``keepdim``, or ``fn`` itself when
    it has neither, already takes them, or has a signature the wrapper cannot reproduce."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return fn
    params = list(sig.parameters.values())
    pl = plan(params)
    if (
        pl is None
        or hasattr(fn, "_ember_numpy_names")  # (a wrapper that renames already)
        or any(p.name in _RESERVED or p.name.startswith("_n") for p in params)
    ):
        return fn
    name = name or fn.__name__
    ns, ref = helpers()
    head = [p.replace(annotation=_EMPTY) for p in params]
    for i, p in enumerate(head):
        if p.default is not _EMPTY and p.default is not NA:
            head[i] = p.replace(default=ref(p.default))
    head = shown(head, pl, ref)
    args = ", ".join(f"{p.name}={p.name}" if p.kind is p.KEYWORD_ONLY else p.name for p in params)
    src = (
        f"def {name}{inspect.Signature(head)}:\n"
        + prologue(pl, name, ref, given_call(params))
        + f"    return _fn({args})\n"
    )
    ns["_fn"] = fn
    ns["__name__"] = getattr(fn, "__module__", None) or "ember"
    exec(compile(src, f"<ember.{name} numpy names>", "exec"), ns)
    wrapper = ns[name]
    functools.update_wrapper(wrapper, fn)
    del wrapper.__wrapped__  # (tools test __wrapped__ for patches: see _out_arg.with_out)
    wrapper.__signature__ = sig
    wrapper._ember_numpy_names = fn
    return wrapper


def install_methods(cls: type) -> None:
    """Give ``cls``'s public methods with ``dim``/``keepdim`` NumPy's names for them."""
    for name, fn in list(vars(cls).items()):
        if name.startswith("_") or not isinstance(fn, types.FunctionType):
            continue
        wrapped = with_numpy_names(fn, name)
        if wrapped is not fn:
            setattr(cls, name, wrapped)


def install_namespace(module) -> None:
    """The same for a module's public functions (``ember.linalg``, ``ember.special``)."""
    for name in getattr(module, "__all__", None) or dir(module):
        fn = getattr(module, name, None)
        if name.startswith("_") or not isinstance(fn, types.FunctionType):
            continue
        wrapped = with_numpy_names(fn, name)
        if wrapped is not fn:
            setattr(module, name, wrapped)
