"""Calls inside a scripted function: what is compiled inline, recorded, or left to Python.

Functions and methods written by users (and other scripted functions) are compiled from
their source and inlined, so their control flow stays control flow; ember's public functions
are recorded as ``call_function`` nodes; methods of ember's own modules are compiled when they
can be (else traced through as ember.fx does); ``@ember.jit.ignore`` keeps a Python call and
``@ember.jit.unused`` a call that raises.
"""

from __future__ import annotations

import types
import typing
from typing import TYPE_CHECKING, Any

from ember import _checks
from ember.fx import _patch
from ember.fx._names import _name_table
from ember.fx.proxy import Proxy
from ember.nn import Module

from ._values import RunTimeValueError, ScriptCompileError, is_dynamic

if TYPE_CHECKING:
    from ._expr import Frame

__all__ = ["modifier"]


def modifier(fn: Any) -> str | None:
    """'ignore' / 'unused' / 'export' / None: how ember.jit's decorators marked ``fn``."""
    fn = getattr(fn, "__func__", fn)
    for attr in ("_ember_jit_modifier", "_jit_modifier", "_torchscript_modifier"):
        m = getattr(fn, attr, None)
        if m is not None:
            name = getattr(m, "name", m)
            return str(name).lower().rsplit(".", 1)[-1]
    return None


def _tuple_arity(tracer: Any, p: Proxy) -> int | None:
    """The length of ``p`` when it is an input annotated ``tuple[T1, ..., Tn]`` (or
    ``Optional`` of one), as TorchScript types it statically; else None."""
    node = p.node
    node = getattr(tracer, "origin", {}).get(node, node)
    hint = getattr(tracer, "arg_types", {}).get(node)
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        hint = rest[0] if len(rest) == 1 else None
    if typing.get_origin(hint) is not tuple:
        return None
    elts = typing.get_args(hint)
    return None if not elts or Ellipsis in elts else len(elts)


# TorchScript's non-tensor value types: an input annotated with these is never a tensor
_PLAIN_TYPES = (int, float, bool, complex, str, type(None), list, tuple, dict)


def _isinstance_by_hint(tracer: Any, p: Proxy, types_: tuple) -> bool | None:
    """``isinstance(p, types_)`` for an input ``p`` annotated with a non-tensor type, as
    TorchScript's static types decide it (``x: int`` is an int); None when ``p`` has no such
    annotation. An ``Optional[int]`` tested for ``int`` is known only at run time."""
    node = p.node
    node = getattr(tracer, "origin", {}).get(node, node)
    hint = getattr(tracer, "arg_types", {}).get(node)
    if hint is None:
        return None
    members = typing.get_args(hint)
    if typing.get_origin(hint) not in (typing.Union, types.UnionType):
        members = (hint,)
    origins = [typing.get_origin(m) or m for m in members]
    if not all(o in _PLAIN_TYPES for o in origins):
        return None  # tensors, modules, classes: the tracer's answer stands
    found = [any(isinstance(t, type) and issubclass(o, t) for t in types_) for o in origins]
    if all(found) or not any(found):
        return all(found)
    raise RunTimeValueError(f"isinstance of an input annotated {hint} is known only at run time")


def _user_function(fn: Any) -> bool:
    return (
        isinstance(fn, types.FunctionType)
        and not (fn.__module__ or "").startswith("ember.")
        and fn.__module__ != "ember"
        and fn.__name__ != "<lambda>"
    )


def _ember_nn_function(fn: Any) -> bool:
    return isinstance(fn, types.FunctionType) and (fn.__module__ or "").startswith("ember.nn.")


class _Calls:
    """Call handling (mixed into the expression evaluator)."""

    def _e_Call(self, node, env, frame):
        fn = self.eval(node.func, env, frame)
        args = self._elts(node.args, env, frame)
        kwargs = {}
        for kw in node.keywords:
            val = self.eval(kw.value, env, frame)
            if kw.arg is None:
                kwargs.update(val)
            else:
                kwargs[kw.arg] = val
        return self.call(fn, args, kwargs, frame, node)

    def _super(self, frame: Frame, node) -> Any:
        code = frame.fn.__code__
        first = code.co_varnames[0] if code.co_argcount else None
        obj = self._env_stack[-1].get(first) if first and self._env_stack else None
        for cls in type(obj).__mro__ if obj is not None else ():
            if getattr(cls.__dict__.get(frame.fn.__name__), "__code__", None) is code:
                return super(cls, obj)
        raise ScriptCompileError("super() is only supported in methods" + frame.where(node))

    def call(self, fn, args: list, kwargs: dict, frame: Frame, node) -> Any:
        tr = self.tracer
        if isinstance(fn, Proxy):  # a method of a run-time value: x.sum(), x.view(...)
            return fn(*args, **kwargs)
        dyn = is_dynamic(args) or is_dynamic(kwargs)
        if fn is super and not args:  # super() in a method: its class is the defining one
            return self._super(frame, node)
        if fn is print:  # printing is not part of the graph (documented in docs/export.md)
            return None
        if fn is range and dyn:
            raise ScriptCompileError(
                "range() of a run-time value can only be iterated by a for loop" + frame.where(node)
            )
        if fn is len and len(args) == 1 and isinstance(args[0], Proxy):
            n = _tuple_arity(tr, args[0])
            if n is not None:  # a fixed-length tuple input: its length is known
                return n
        if dyn and len(args) == 1 and isinstance(args[0], Proxy) and not kwargs:
            from . import _runtime

            special = {
                len: _runtime.length,
                int: _runtime.to_int,
                float: _runtime.to_float,
                bool: _runtime.to_bool,
                tuple: _runtime.to_tuple,
                list: _runtime.to_list,
            }
            if fn in special:
                return tr.create_proxy("call_function", special[fn], (args[0],), {})
        if fn is isinstance and isinstance(args[0], Proxy):
            from ember import Tensor

            types_ = args[1] if isinstance(args[1], tuple) else (args[1],)
            if _tuple_arity(tr, args[0]) is not None:  # an input annotated as a tuple
                return any(t is tuple or t is list for t in types_)
            by_hint = _isinstance_by_hint(tr, args[0], types_)
            if by_hint is not None:
                return by_hint
            return any(isinstance(t, type) and issubclass(t, Tensor) for t in types_)
        if fn is _checks._assert and not dyn:  # ``torch._assert`` on a compile-time value
            cond = args[0] if args else kwargs.get("condition")
            if not cond:
                self._always_fails(args[1] if len(args) > 1 else kwargs.get("message", ""))
            return None
        name = getattr(fn, "__name__", "")
        if (getattr(fn, "__module__", None) or "").startswith("ember.jit"):
            if name == "is_scripting":
                return True
            if name == "annotate":
                return args[1]
        original = getattr(fn, "_ember_script_original", None)
        if original is not None:  # another scripted function: compile its source inline
            return self.run_function(original, tuple(args), kwargs)
        target = fn.__func__ if isinstance(fn, types.MethodType) else fn
        if dyn and id(fn) in _name_table():
            # one of ember's public functions reached by another name (a module's
            # ``_fn = staticmethod(F.relu)``): record it as the namespace patches would
            return tr.create_proxy("call_function", fn, tuple(args), kwargs)
        if id(fn) in _patch._originals:  # a namespace function under the tracer's patch
            return fn(*args, **kwargs)
        if (
            dyn
            and isinstance(fn, types.MethodType)
            and _ember_nn_function(target)
            and isinstance(fn.__self__, Module)
        ):
            # a method of one of ember's modules (``self._conv_forward``, input checks):
            # compile it so shape-dependent branches stay branches; else trace it as ember.fx
            snap = tr.snapshot()
            try:
                return self.run_function(target, (fn.__self__, *args), kwargs)
            except ScriptCompileError:
                tr.rollback(snap)
                return fn(*args, **kwargs)
        if dyn and _ember_nn_function(fn):
            # a helper function of ember.nn (``_get_seq_len``, a module's staticmethod):
            # compiled like the methods above, so shape tests in it stay tests
            snap = tr.snapshot()
            try:
                return self.run_function(fn, tuple(args), kwargs)
            except ScriptCompileError:
                tr.rollback(snap)
                return fn(*args, **kwargs)
        if _user_function(target):
            mod = modifier(target)
            if mod == "ignore":  # stays a Python call, as TorchScript leaves it
                return tr.create_proxy("call_function", fn, tuple(args), kwargs)
            if mod == "unused":
                from ._runtime import unused_called

                return tr.create_proxy("call_function", unused_called, (target.__qualname__,), {})
            bound = (fn.__self__,) if isinstance(fn, types.MethodType) else ()
            return self.run_function(target, (*bound, *args), kwargs)
        return fn(*args, **kwargs)
