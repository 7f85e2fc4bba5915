"""``ember.overrides``: PyTorch's ``__torch_function__`` protocol (``torch.overrides``).

A type (a tensor-like class, or a ``Tensor`` subclass) that defines the class method::

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None): ...

receives the calls of the participating functions made with one of its instances among the
tensor arguments: ``func`` is the public function (``ember.view_as_complex``,
``ember.nn.functional.scaled_dot_product_attention`` ...), ``types`` the overloading types
found, ``args``/``kwargs`` the call's. Returning ``NotImplemented`` passes to the next type;
when every type declines, a ``TypeError`` names the function and the types.

Participating for any overloading type: ``nn.functional.scaled_dot_product_attention``,
``silu``, ``gelu``, ``softmax``, ``dropout``; ``ember.view_as_complex``, ``view_as_real``,
``polar``, ``outer``, ``matmul``, ``cat``, ``stack``. Every other public function of
``ember.nn.functional``, and the ``ember.*`` functions that take ``out=`` or follow autocast,
hand the call over when their first tensor argument (``F.embedding``: its ``weight`` too) is a
tensor-like object or an instance of a Tensor subclass with a ``__torch_function__`` of its
own; the rest of the public ``ember.*`` functions that take tensors test each tensor parameter
(``install_namespace_dispatch``, run when the namespace is built). On plain tensors each costs
exact-type tests in a wrapper (``_torch_function.py``). ``Tensor.__torch_function__`` is
PyTorch's default (run as written, results as the subclass); the switches that make handlers
run functions as written are per thread.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterable
from types import FunctionType, MethodType
from typing import Any

from .tensor import Tensor

__all__ = [
    "get_overridable_functions",
    "handle_torch_function",
    "has_torch_function",
    "has_torch_function_unary",
    "has_torch_function_variadic",
    "is_tensor_like",
]


def _default_torch_function(cls, func, types, args=(), kwargs=None):
    """``Tensor.__torch_function__``: what a subclass's ``super().__torch_function__(...)``
    reaches, as PyTorch's: run ``func`` with no subclass dispatch in this thread meanwhile
    (``DisableTorchFunctionSubclass``; tensor-like objects still dispatch) and return its
    tensors as ``cls`` instances."""
    if not all(issubclass(cls, t) for t in types):
        return NotImplemented
    _STATE.sub_off += 1
    try:
        ret = func(*args, **(kwargs or {}))
    finally:
        _STATE.sub_off -= 1
    return _convert(ret, cls)


def _convert(ret, cls):
    if cls is Tensor:
        return ret
    if isinstance(ret, Tensor) and not isinstance(ret, cls):
        out = object.__new__(cls)  # (no __init__: the slots are ret's, as torch's as_subclass)
        for name in _SLOTS:
            setattr(out, name, getattr(ret, name))
        return out
    if type(ret) in (list, tuple):
        return type(ret)(_convert(r, cls) for r in ret)
    return ret


_SLOTS = [n for n in Tensor.__slots__ if n != "__weakref__"]
# a subclass that does not define its own __torch_function__ is not dispatched (it inherits
# this default; PyTorch dispatches it and converts the results, ember runs the function)
Tensor.__torch_function__ = classmethod(_default_torch_function)


class _State(threading.local):
    # per thread: > 0 while a handler runs a function as written on its tensor-like arguments
    # (``_no_tensor_like_dispatch``, the broad set only), and while the default
    # Tensor.__torch_function__ runs one (``sub_off``: no Tensor-subclass dispatch at all)
    off = 0
    sub_off = 0


_STATE = _State()


def _overloads(x) -> bool:
    """``x``'s type defines its own ``__torch_function__`` (the bounded set's test, and
    ``has_torch_function``'s)."""
    t = type(x)
    if t is Tensor:
        return False
    f = getattr(t, "__torch_function__", None)
    if f is None or getattr(f, "__func__", None) is _default_torch_function:
        return False
    return not (_STATE.sub_off and isinstance(x, Tensor))


def _tensor_like(x) -> bool:
    """``x``'s type defines its own ``__torch_function__`` and dispatch is not switched off in
    this thread: the test of the broad set (made after ``type(x) is not Tensor``) -- tensor-like
    objects and Tensor subclasses with a ``__torch_function__`` of their own."""
    f = getattr(type(x), "__torch_function__", None)
    if f is None or getattr(f, "__func__", None) is _default_torch_function:
        return False
    return not (_STATE.sub_off if isinstance(x, Tensor) else _STATE.off)


class _no_tensor_like_dispatch:
    """Run the functions of the broad set as written on tensor-like arguments (duck typing):
    what a handler does for a function it has no rule for. Per thread."""

    def __enter__(self) -> None:
        _STATE.off += 1

    def __exit__(self, *exc) -> None:
        _STATE.off -= 1


class _no_subclass_dispatch:
    """No ``__torch_function__`` dispatch of Tensor subclasses in this thread (PyTorch's
    ``DisableTorchFunctionSubclass``): what a subclass's handler runs functions under."""

    def __enter__(self) -> None:
        _STATE.sub_off += 1

    def __exit__(self, *exc) -> None:
        _STATE.sub_off -= 1


def has_torch_function(relevant_args: Iterable[Any]) -> bool:
    """Whether any of ``relevant_args`` has a type (other than ``Tensor``) that defines
    ``__torch_function__``."""
    return any(_overloads(a) for a in relevant_args)


def has_torch_function_unary(arg: Any) -> bool:
    """``has_torch_function((arg,))`` without building a tuple."""
    return _overloads(arg)


def has_torch_function_variadic(*args: Any) -> bool:
    """``has_torch_function(args)``."""
    return any(_overloads(a) for a in args)


def is_tensor_like(inp: Any) -> bool:
    """True for ``Tensor`` instances and objects whose type defines ``__torch_function__``."""
    return isinstance(inp, Tensor) or getattr(type(inp), "__torch_function__", None) is not None


def _overloaded_types(relevant_args: Iterable[Any]) -> list[tuple[type, Any]]:
    """(type, first instance) per overloading type, a subclass before its base classes (the
    order PyTorch tries them in)."""
    found: list[tuple[type, Any]] = []
    for a in relevant_args:
        t = type(a)
        if not _overloads(a) or any(t is u for u, _ in found):
            continue
        at = len(found)
        for j, (u, _) in enumerate(found):
            if issubclass(t, u):
                at = j
                break
        found.insert(at, (t, a))
    return found


def handle_torch_function(
    public_api: Callable, relevant_args: Iterable[Any], *args: Any, **kwargs: Any
) -> Any:
    """Call ``__torch_function__`` of the overloading types among ``relevant_args`` for the
    call ``public_api(*args, **kwargs)``; the first result that is not ``NotImplemented`` is
    returned."""
    overloaded = _overloaded_types(relevant_args)
    types = tuple(t for t, _ in overloaded)
    for t, _ in overloaded:
        method = t.__torch_function__
        if type(method) is FunctionType:  # a plain method: a class method, as PyTorch does
            warnings.warn(
                "Defining your `__torch_function__` as a plain method is deprecated and will be "
                "an error in future, please define it as a classmethod.",
                UserWarning,
                stacklevel=3,
            )
            method = MethodType(method, t)
        result = method(public_api, types, args, kwargs)
        if result is not NotImplemented:
            return result
    name = getattr(public_api, "__qualname__", None) or repr(public_api)
    raise TypeError(
        f"no implementation found for '{getattr(public_api, '__module__', '')}.{name}' on types "
        f"that implement __torch_function__: {[t.__name__ for t in types]}"
    )


def get_overridable_functions() -> dict[Any, list[Callable]]:
    """The participating functions, by namespace (``ember``, ``ember.nn.functional``)."""
    import ember
    import ember.nn.functional as F

    out: dict[Any, list[Callable]] = {}
    for ns in (ember, F):
        fns = [
            f
            for f in vars(ns).values()
            if callable(f) and getattr(f, "__ember_torch_function__", False)
        ]
        out[ns] = fns
    return out
