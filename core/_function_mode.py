"""``TorchFunctionMode`` (torch.overrides.TorchFunctionMode): a context manager whose
``__torch_function__(func, types, args, kwargs)`` sees every ember function and Tensor
method called inside it, plain tensors included.

Why patching: testing "is a mode active?" in every op would tax every eager call for a feature
few programs use. Instead, while at least one mode is active (in any thread), the public
functions of ember's namespaces (those that take part in ``__torch_function__``, and the
factories), the Tensor methods and the operator dunders are replaced by wrappers that hand the
call to the innermost active mode of the calling thread; the last mode to exit restores them.
Entering the first mode costs the patching (~1-5 ms here; ~0.2 s the first time in a process);
a program without modes pays nothing.

As in torch, ``func`` is the callable the program reached (``torch.Tensor.add`` for ``x + y``
and ``x.add(y)``, ``torch.add`` for ``torch.add(x, y)``): comparing it with the public name
works inside the mode (``func == torch.Tensor.add``), and the mode is popped while its handler
runs, so ``func(*args, **kwargs)`` there runs the op (or the next outer mode's handler).
Under ``ember.compile``: a compiled call made inside a mode runs eagerly (the mode sees the
ops); entering a mode inside a compiled region is a graph break there (that call runs eagerly).
"""

from __future__ import annotations

import functools
import threading
import types
from collections.abc import Callable
from typing import Any

__all__ = ["BaseTorchFunctionMode", "TorchFunctionMode", "active"]

_TLS = threading.local()
_LOCK = threading.Lock()
_ACTIVE = [0]  # modes active in all threads; the patches are in place while it is > 0
_UNDO: list[Callable[[], None]] = []

# operator dunders reported as the named method, as torch does (``x + y`` -> Tensor.add)
_AS_METHOD = {
    "__add__": "add",
    "__sub__": "sub",
    "__mul__": "mul",
    "__truediv__": "div",
    "__matmul__": "matmul",
    "__neg__": "neg",
    "__pow__": "pow",
}
_DUNDERS = (
    *_AS_METHOD,
    "__radd__",
    "__rsub__",
    "__rmul__",
    "__rtruediv__",
    "__rmatmul__",
    "__rpow__",
    "__floordiv__",
    "__mod__",
    "__abs__",
    "__invert__",
    "__and__",
    "__or__",
    "__xor__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__eq__",
    "__ne__",
    "__getitem__",
    "__setitem__",
)
# factories torch routes through modes too (not ``__torch_function__`` participants in ember)
_FACTORIES = (
    "arange empty eye full linspace logspace ones rand randint randn randperm tensor zeros "
    "empty_like full_like ones_like rand_like randn_like randint_like zeros_like"
).split()


def active() -> bool:
    """Whether any TorchFunctionMode is active (in any thread)."""
    return _ACTIVE[0] > 0


def _stack() -> list:
    st = getattr(_TLS, "stack", None)
    if st is None:
        st = _TLS.stack = []
        _TLS.visible = None
    return st


class _ModeWrapper:
    """``orig`` handing its calls to the innermost visible mode; ``reported`` (filled later)
    holds the callable the mode is told about when it is not this wrapper (``x + y``:
    ``Tensor.add``).

    It hashes and compares equal to ``orig``, so a table keyed by the public functions before
    any mode was entered still finds the ``func`` a mode is handed (thop's FLOPs counter keys
    ``torch.matmul`` / ``torch.Tensor.matmul`` at import, as ultralytics' ``model.info()``
    runs it), while ``func is torch.Tensor.add`` inside the mode holds as well. A descriptor,
    so that as a Tensor attribute it binds like the method it replaces."""

    def __init__(self, orig: Callable, reported: list | None = None) -> None:
        self._orig = orig
        self._reported = reported
        functools.update_wrapper(self, orig)

    def __call__(self, *args, **kwargs):
        st = getattr(_TLS, "stack", None)
        if not st:
            return self._orig(*args, **kwargs)
        n = len(st) if _TLS.visible is None else _TLS.visible
        if n == 0:
            return self._orig(*args, **kwargs)
        prev, _TLS.visible = _TLS.visible, n - 1  # the mode is popped while its handler runs
        try:
            func = self._reported[0] if self._reported else self
            return st[n - 1].__torch_function__(func, (), args, kwargs)
        finally:
            _TLS.visible = prev

    def __get__(self, obj, objtype=None):
        return self if obj is None else types.MethodType(self, obj)

    def __eq__(self, other) -> bool:
        if isinstance(other, _ModeWrapper):
            other = other._orig
        return self._orig is other

    def __hash__(self) -> int:
        return hash(self._orig)

    def __repr__(self) -> str:
        return repr(self._orig)


_wrapper = _ModeWrapper


_PLAN: list[tuple[Any, str, Any, Callable]] = []  # (owner, name, original, wrapper), built once


def _plan() -> list[tuple[Any, str, Any, Callable]]:
    import importlib

    from ember import Tensor
    from ember.fx._patch import _namespace_entries

    plan = []
    mods: dict[str, Any] = {}
    for modname, name, fn in _namespace_entries():
        if getattr(fn, "__ember_torch_function__", False) or (
            modname == "ember" and name in _FACTORIES
        ):
            mod = mods.get(modname) or mods.setdefault(modname, importlib.import_module(modname))
            if getattr(mod, name, None) is fn:
                plan.append((mod, name, fn, _wrapper(fn)))
    methods: dict[str, tuple[Callable, Callable]] = {}
    reports: dict[str, list] = {}
    for name, fn in list(vars(Tensor).items()):
        if name.startswith("_") and name not in _DUNDERS:
            continue
        if callable(fn) and not isinstance(fn, (type, staticmethod, classmethod)):
            reports[name] = []
            methods[name] = (fn, _wrapper(fn, reports[name]))
    for dunder, method in _AS_METHOD.items():  # ``x + y`` is reported as Tensor.add
        if dunder in methods and method in methods:
            reports[dunder].append(methods[method][1])
    plan += [(Tensor, name, fn, w) for name, (fn, w) in methods.items()]
    return plan


def _patch() -> None:
    global _PLAN
    if not _PLAN or any(
        (o.__dict__.get(n) if isinstance(o, type) else getattr(o, n, None)) is not f
        for o, n, f, _ in _PLAN
    ):
        _PLAN = _plan()  # first use, or a function was replaced since
    for owner, name, orig, w in _PLAN:
        setattr(owner, name, w)
        _UNDO.append(functools.partial(setattr, owner, name, orig))


def _unpatch() -> None:
    while _UNDO:
        _UNDO.pop()()


class TorchFunctionMode:
    """A mode that sees every ember function and Tensor method called while it is active:
    subclass it and define ``__torch_function__(self, func, types, args=(), kwargs=None)``."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        raise NotImplementedError

    def __enter__(self) -> TorchFunctionMode:
        from ember._compile._capture import GraphBreak, _user_line, is_compiling

        if is_compiling():
            raise GraphBreak(f"entering {type(self).__name__} (a TorchFunctionMode)", _user_line())
        with _LOCK:
            if _ACTIVE[0] == 0:
                _patch()
            _ACTIVE[0] += 1
        _stack().append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        st = _stack()
        if st and st[-1] is self:
            st.pop()
        elif self in st:
            st.remove(self)
        with _LOCK:
            _ACTIVE[0] -= 1
            if _ACTIVE[0] == 0:
                _unpatch()

    @classmethod
    def push(cls, *args: Any, **kwargs: Any) -> TorchFunctionMode:
        """Make an instance and enter it (torch's deprecated ``Mode.push``)."""
        return cls(*args, **kwargs).__enter__()


class BaseTorchFunctionMode(TorchFunctionMode):
    """A TorchFunctionMode that runs every call as written (subclasses override a few)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))
