"""Where batching rules are found (see ``_vmap_tensor.py``): the rule table, the dispatching
wrappers patched over ember's namespaces, Tensor's methods and nn modules' ``_fn`` while a vmap
runs, the methods of the batched classes, and the ``Function.apply`` guard that stops an op
reached with a batched tensor but no rule.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..autograd import function as _function
from ..tensor import Tensor
from ._vmap_tensor import _CLASSES, _COUNTER, _PHYS, _STACK, BatchedTensor

__all__ = [
    "RULES",
    "ALWAYS",
    "dispatch",
    "no_rule",
    "enter_level",
    "exit_level",
    "patched",
    "install_methods",
]


# ---- dispatch ----------------------------------------------------------------------------
# name -> rule(orig, args, kwargs); filled by _vmap_rules and _vmap_nn. Names are the public
# function names; "nn.functional.<name>" entries take precedence for that namespace.
RULES: dict[str, Callable] = {}


def _has_batched(args: tuple, kwargs: dict) -> bool:
    for a in args:
        if isinstance(a, BatchedTensor):
            return True
        if isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, BatchedTensor):
                    return True
    for a in kwargs.values():
        if isinstance(a, BatchedTensor):
            return True
    return False


def no_rule(name: str) -> RuntimeError:
    return RuntimeError(
        f"vmap: there is no batching rule for '{name}', so it cannot run on a batched tensor. "
        "Batching rules exist for elementwise ops, reductions, shape and indexing ops, the "
        "matmul family and common nn.functional ops (see docs/func.md); compute this op "
        "outside vmap, or write the function with supported ops."
    )


def dispatch(name: str, orig: Callable, args: tuple, kwargs: dict):
    rule = RULES.get(name)
    if rule is None:
        raise no_rule(name)
    return rule(orig, args, kwargs)


# Names whose rule runs even without a batched argument (random creation under vmap).
ALWAYS: set[str] = set()


def _make_wrapper(name: str, orig: Callable) -> Callable:
    always = name in ALWAYS

    def wrapper(*args, **kwargs):
        if not _PHYS[0] and (always or _has_batched(args, kwargs)):
            return dispatch(name, orig, args, kwargs)
        return orig(*args, **kwargs)

    wrapper.__name__ = getattr(orig, "__name__", name)
    wrapper.__doc__ = getattr(orig, "__doc__", None)
    wrapper.__wrapped__ = orig
    return wrapper


def _guard(cls, args) -> None:
    """Installed into ``Function.apply`` while a vmap runs: an op reached with a batched
    argument without passing a batching rule is an error, not a wrong answer."""
    if _PHYS[0]:
        return
    for a in args:
        if isinstance(a, BatchedTensor):
            raise no_rule(cls.__name__)


# ---- patching the namespaces for the duration of the outermost vmap ---------------------
_PATCHED: list[tuple[Any, str, Any]] = []


def _namespace_targets() -> list[tuple[Any, str, str, Callable]]:
    import importlib

    from ..fx._names import NAMESPACES, namespace_functions

    out = []
    for modname in NAMESPACES:
        mod = importlib.import_module(modname)
        prefix = "nn.functional." if modname == "ember.nn.functional" else ""
        for name, fn in namespace_functions(modname).items():
            key = prefix + name if prefix + name in RULES else name
            if prefix_only(modname) and key == name:
                key = f"{modname[6:]}.{name}"  # no fallback to ember.<name>'s rule
            out.append((mod, name, key, fn))
    # methods of plain tensors given a batched argument (plain[batched], w.matmul(batched))
    import types

    for name, fn in list(Tensor.__dict__.items()):
        if (
            isinstance(fn, types.FunctionType)
            and name not in _PASS_METHODS
            and (not name.startswith("_") or name in _DUNDER_OPS)
            and name != "__init__"
        ):
            out.append((Tensor, name, name, fn))
    # modules that hold their functional as a class attribute (nn.Conv2d._fn, nn.ReLU._fn)
    import ember.nn as nn

    by_id = {id(fn): key for _, _, key, fn in out}
    for cname in dir(nn):
        cls = getattr(nn, cname)
        raw = cls.__dict__.get("_fn") if isinstance(cls, type) else None
        if isinstance(raw, staticmethod) and id(raw.__func__) in by_id:
            out.append((cls, "_fn", by_id[id(raw.__func__)], raw.__func__))
    from ._vmap_modules import extra_targets

    return out + extra_targets(out)


def prefix_only(modname: str) -> bool:
    """linalg and fft functions share names with ember's (norm, diagonal, fft) but not their
    meaning: only their own rules ("linalg.norm") apply."""
    return modname in ("ember.linalg", "ember.fft")


_TARGETS: list | None = None


def patched(func: Callable) -> Callable:
    """``func`` as called inside vmap: a namespace function passed directly (``vmap(ember.dot)``)
    is replaced by its patched wrapper."""
    if not _STACK:
        return func
    hit = _BY_ID.get(id(func))
    return func if hit is None else hit[0].__dict__.get(hit[1], func)


_BY_ID: dict[int, tuple[Any, str]] = {}
_WRAPPERS: list = []  # one per _TARGETS entry, made once


def enter_level(size: int, randomness: str) -> int:
    global _TARGETS
    if not _STACK:
        if _TARGETS is None:
            _TARGETS = _namespace_targets()
            for mod, name, _, fn in _TARGETS:
                if not isinstance(mod, type):
                    _BY_ID.setdefault(id(fn), (mod, name))
            for mod, _name, key, fn in _TARGETS:
                w = _make_wrapper(key, fn)
                static = isinstance(mod, type) and mod is not Tensor
                _WRAPPERS.append(staticmethod(w) if static else w)
        for (mod, name, _, _), w in zip(_TARGETS, _WRAPPERS):
            _PATCHED.append((mod, name, mod.__dict__.get(name, _MISSING)))
            setattr(mod, name, w)
        _function._vmap_guard[0] = _guard
    _COUNTER[0] += 1
    _STACK.append((_COUNTER[0], size, randomness))
    return _COUNTER[0]


_MISSING = object()


def exit_level() -> None:
    level = _STACK.pop()[0]
    # forget the batched classes of this level (level ids are never reused, so the cache would
    # grow by a class per vmap call); a tensor that escaped keeps its class alive and still
    # reports the escape
    for key in [k for k in _CLASSES if level in k]:
        del _CLASSES[key]
    if not _STACK:
        _function._vmap_guard[0] = None
        while _PATCHED:
            mod, name, old = _PATCHED.pop()
            if old is _MISSING:
                delattr(mod, name)
            else:
                setattr(mod, name, old)


# ---- methods of the batched classes ------------------------------------------------------
# Intrinsic methods that are right on a batched tensor as they are (autograd state, dtype and
# device queries).
_PASS_METHODS = frozenset(
    {
        "requires_grad_",
        "register_hook",
        "retain_grad",
        "is_floating_point",
        "is_complex",
        "element_size",
        "backward",
        "get_device",
        "is_signed",
        "data_ptr",
        "untyped_storage",
        "is_shared",
        "is_pinned",
        "type_as",
        "__reduce_ex__",
        "__reduce__",
        "__deepcopy__",
        "__copy__",
        "__setstate__",
        "__getstate__",
        "__format__",
        "__sizeof__",
        "__dir__",
        "__init_subclass__",
        "__subclasshook__",
        "__class_getitem__",
        "__instancecheck__",
        "__array__",
        "__array_wrap__",
        "__dlpack__",
        "__dlpack_device__",
        "__contains__",
        "__reversed__",
        "__eq__",
        "__ne__",
        "__delitem__",
    }
)


def _method(name: str, orig: Callable) -> Callable:
    def method(*args, **kwargs):
        if _PHYS[0]:
            return orig(*args, **kwargs)
        return dispatch(name, orig, args, kwargs)

    method.__name__ = name
    return method


def install_methods() -> None:
    """Give the batched base class one method per Tensor method: its rule, or an error."""
    import types

    for name in dir(Tensor):
        if name in BatchedTensor.__dict__ and name not in ("__eq__", "__ne__"):
            continue
        attr = getattr(Tensor, name, None)
        if not isinstance(attr, types.FunctionType):
            continue
        if name in _PASS_METHODS and name not in RULES:
            continue
        if name.startswith("__") and name not in RULES and name not in _DUNDER_OPS:
            continue
        setattr(BatchedTensor, name, _method(name, attr))
    BatchedTensor.__hash__ = Tensor.__hash__


# Operators that must never see a batched tensor without a rule (they compute on _data).
_DUNDER_OPS = frozenset(
    {
        "__add__",
        "__radd__",
        "__sub__",
        "__rsub__",
        "__mul__",
        "__rmul__",
        "__truediv__",
        "__rtruediv__",
        "__floordiv__",
        "__rfloordiv__",
        "__mod__",
        "__rmod__",
        "__pow__",
        "__rpow__",
        "__matmul__",
        "__rmatmul__",
        "__neg__",
        "__pos__",
        "__abs__",
        "__invert__",
        "__and__",
        "__rand__",
        "__or__",
        "__ror__",
        "__xor__",
        "__rxor__",
        "__lt__",
        "__le__",
        "__gt__",
        "__ge__",
        "__eq__",
        "__ne__",
        "__getitem__",
        "__setitem__",
        "__iadd__",
        "__isub__",
        "__imul__",
        "__itruediv__",
        "__lshift__",
        "__rshift__",
    }
)
