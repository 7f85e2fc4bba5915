"""Qualified names of call_function targets, and their safe resolution back to callables.

One table serves the code generator (``ember.relu(x)`` in ``GraphModule.code``), the tracer's
namespace patching and the JSON serializer. Resolution only ever walks ember's own namespaces
and Python's ``operator`` module: a name in a saved graph can never reach other code.
"""

from __future__ import annotations

import builtins
import importlib
import math
import operator
import types
from collections.abc import Callable
from typing import Any

# The namespaces whose public callables user code reaches as ``ember.X`` / ``F.X`` / ...; the
# tracer patches these (see tracer.py) and targets are named after the first one holding them.
NAMESPACES = ("ember", "ember.nn.functional", "ember.linalg", "ember.fft", "ember.special")

_BUILTINS = {"getattr": builtins.getattr}
_table: dict[int, str] | None = None

# The operator functions a graph may call: arithmetic, comparison, logic and indexing. Not
# attrgetter/methodcaller/call, which would let a saved graph reach arbitrary code.
_OPERATORS = frozenset(
    "add sub mul truediv floordiv mod pow matmul neg pos abs invert and_ or_ xor lshift rshift "
    "eq ne lt le gt ge not_ truth is_ is_not contains getitem setitem index iadd isub imul "
    "itruediv ifloordiv imod ipow imatmul iand ior ixor ilshift irshift".split()
)
# math's functions a graph may call (the tracer records them applied to sizes)
_MATH = frozenset(n for n in dir(math) if not n.startswith("_") and callable(getattr(math, n)))
# ember callables that touch files, processes or global state: never reachable from a saved
# graph (a name's last part, or a prefix of its path)
_UNSAFE_NAMES = frozenset(
    {
        "save",
        "load",
        "save_safetensors",
        "load_safetensors",
        "from_file",
        "manual_seed",
        "seed",
        "set_rng_state",
        "fork_rng",
        "compile",
    }
)
_UNSAFE_PREFIXES = (
    "ember.serialization",
    "ember.utils",
    "ember.distributed",
    "ember.hub",
    "ember.multiprocessing",
    "ember.backends",
    "ember.cuda",
    "ember.cpu",
    "ember.accelerator",
    "ember.testing",
    "ember.profiler",
    "ember.onnx",
    "ember.launcher",
    "ember.set_",
    "ember.use_",
)


def namespace_functions(modname: str) -> dict[str, Callable]:
    """Public plain functions of one namespace (no classes, no submodules, no dtypes)."""
    mod = importlib.import_module(modname)
    out = {}
    for name in dir(mod):
        if name.startswith("_"):
            continue
        fn = getattr(mod, name, None)
        if isinstance(fn, (types.FunctionType, types.BuiltinFunctionType)) and _is_ember(fn):
            out[name] = fn
    if modname == "ember":  # the nn-alias names that ember resolves lazily (ember.softmax)
        import ember

        for name in sorted(ember._FROM_FUNCTIONAL):
            fn = getattr(ember, name, None)
            if callable(fn) and _is_ember(fn):
                out.setdefault(name, fn)
    return out


def _is_ember(obj: Any) -> bool:
    return (getattr(obj, "__module__", None) or "").split(".")[0] == "ember"


def _name_table() -> dict[int, str]:
    global _table
    if _table is None:
        table: dict[int, str] = {}
        for modname in NAMESPACES:
            for name, fn in namespace_functions(modname).items():
                table.setdefault(id(fn), f"{modname}.{name}")
                inner = getattr(fn, "_ember_out_wrapped", None)
                if inner is not None:  # the op under its out= wrapper (core/_out_arg.py)
                    table.setdefault(id(inner), f"{modname}.{name}")
        _table = table
    return _table


def register_name(fn: Callable, name: str) -> None:
    """Record ``name`` as the qualified name of ``fn`` (used for patched originals)."""
    _name_table().setdefault(id(fn), name)


def target_name(target: Any) -> str:
    """``ember.relu`` / ``operator.add`` / ``builtins.getattr``, or ``module.qualname``."""
    if isinstance(target, str):
        return target
    custom = getattr(type(target), "_fx_target_name", None)  # ember.ops.<ns>.<op>.default
    if custom is not None:
        return target._fx_target_name
    name = _name_table().get(id(target))
    if name is not None:
        return name
    if getattr(operator, getattr(target, "__name__", ""), None) is target:
        return f"operator.{target.__name__}"
    if _BUILTINS.get(getattr(target, "__name__", "")) is target:
        return f"builtins.{target.__name__}"
    mod = getattr(target, "__module__", None) or "<unknown>"
    return f"{mod}.{getattr(target, '__qualname__', repr(target))}"


def resolve_target(name: str, extra: dict[str, Callable] | None = None) -> Callable:
    """Map a qualified name back to its callable, looking only in ember/operator/``extra``."""
    if extra and name in extra:
        return extra[name]
    head, _, rest = name.partition(".")
    if head == "operator" and rest in _OPERATORS:
        return getattr(operator, rest)
    elif head == "builtins" and rest in _BUILTINS:
        return _BUILTINS[rest]
    elif head == "math" and rest in _MATH:  # pure numeric functions (``math.sqrt`` of a size)
        return getattr(math, rest)
    elif (
        head == "ember"
        and rest
        and not (name.startswith(_UNSAFE_PREFIXES) or name.rpartition(".")[2] in _UNSAFE_NAMES)
    ):
        obj: Any = importlib.import_module("ember")
        for part in rest.split("."):
            if not part.isidentifier():
                break
            obj = getattr(obj, part, None)
            # every step must stay inside ember (a module, class or function of ember's)
            if obj is None or not (
                _is_ember(obj)
                or (isinstance(obj, types.ModuleType) and obj.__name__.startswith("ember."))
            ):
                break
        else:
            if callable(obj):
                return obj
    raise ValueError(
        f"cannot resolve call_function target {name!r}: only ember's tensor "
        "functions, operator's arithmetic/comparison/indexing, math's functions "
        "and builtins.getattr are allowed (pass others in extra_targets)"
    )
