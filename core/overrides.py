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

import sys
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
    "DisableTorchFunction",
    "DisableTorchFunctionSubclass",
    "TorchFunctionMode",
    "BaseTorchFunctionMode",
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
# a user's subclass that does not define its own __torch_function__ is given
# _subclass_torch_function (the same default under another name) by _setup_subclass, so it is
# dispatched and its results converted, as in PyTorch; ember's own subclasses keep this one
# and are not dispatched
Tensor.__torch_function__ = classmethod(_default_torch_function)


def _subclass_torch_function(cls, func, types, args=(), kwargs=None):
    """The default of a user's Tensor subclass that defines no ``__torch_function__``: the
    same as ``Tensor.__torch_function__`` (results as the subclass), under another name so that
    its instances dispatch (``_overloads``) while ember's own subclasses do not."""
    return _default_torch_function(cls, func, types, args, kwargs)


# Tensor methods that are not rows of the method table but that PyTorch dispatches too
_EXTRA_METHODS = (
    "to detach float double half bfloat16 long int short bool type_as cpu cuda new_tensor"
).split()


def _method_dispatch(fn: Callable) -> Callable:
    """``Tensor.<name>`` (``fn``) for a subclass: calls on an instance go to its class's
    ``__torch_function__`` with ``func`` = ``fn`` (PyTorch passes ``Tensor.<name>``), which a
    handler runs as written (no dispatch while it does)."""

    def method(self, *args, **kwargs):
        if _tensor_like(self):
            return handle_torch_function(fn, (self, *args), self, *args, **kwargs)
        return fn(self, *args, **kwargs)

    method.__name__ = getattr(fn, "__name__", "method")
    method.__qualname__ = getattr(fn, "__qualname__", method.__name__)
    method.__doc__ = getattr(fn, "__doc__", None)
    method.__wrapped__ = fn
    return method


def _is_internal(klass: type) -> bool:
    return klass.__module__ == "ember" or klass.__module__.startswith("ember.")


def _setup_subclass(cls: type) -> None:
    """Called for every new Tensor subclass (``Tensor.__init_subclass__``): a user's subclass
    gets the Tensor methods and operators dispatching to its ``__torch_function__`` (its own,
    or PyTorch's default that returns results as the subclass), as in PyTorch. Plain Tensor
    methods are untouched (no cost outside subclasses). ember's own subclasses (Parameter,
    Buffer, QTensor ...) keep their behaviour, as do a user's subclasses of those that define
    no handler (ops on a Parameter subclass return plain Tensors, as PyTorch's)."""
    if _is_internal(cls) and not cls.__dict__.get("_user_dispatch", False):
        return  # ember's own subclasses dispatch only when they ask (ember.masked.MaskedTensor)
    chain = []
    for klass in cls.__mro__:
        if klass is Tensor:
            break
        chain.append(klass)
    if any("__torch_dispatch__" in k.__dict__ for k in chain):
        from ._dispatch_ops import setup_dispatch_subclass

        if setup_dispatch_subclass(cls, chain):
            return  # its ops go to __torch_dispatch__; no __torch_function__ to wrap for
    if not any("__torch_function__" in k.__dict__ for k in chain):
        if any(_is_internal(k) for k in chain):
            return
        cls.__torch_function__ = classmethod(_subclass_torch_function)
    from ._tensor_methods import METHODS

    own = set()
    for klass in chain:
        own.update(klass.__dict__)
    for name in (*METHODS, *_EXTRA_METHODS):
        fn = Tensor.__dict__.get(name)
        if name not in own and callable(fn) and not isinstance(fn, type):
            setattr(cls, name, _method_dispatch(fn))
    for name in ("T", "mT", "H", "mH", "real", "imag"):  # properties whose values are tensors
        prop = Tensor.__dict__.get(name)
        if name not in own and isinstance(prop, property):
            setattr(cls, name, property(_method_dispatch(prop.fget), prop.fset, None, prop.__doc__))


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
    if f is None:
        return False
    f = getattr(f, "__func__", None)
    if f is _default_torch_function or f is _disabled_torch_function_impl:
        return False
    return not (_STATE.sub_off and isinstance(x, Tensor))


def _tensor_like(x) -> bool:
    """``x``'s type defines its own ``__torch_function__`` and dispatch is not switched off in
    this thread: the test of the broad set (made after ``type(x) is not Tensor``) -- tensor-like
    objects and Tensor subclasses with a ``__torch_function__`` of their own."""
    f = getattr(type(x), "__torch_function__", None)
    if f is None:
        return False
    f = getattr(f, "__func__", None)
    if f is _default_torch_function or f is _disabled_torch_function_impl:
        return False
    return not (_STATE.sub_off if isinstance(x, Tensor) else _STATE.off)


# argument types that never overload: the wrappers that test every argument skip them with one
# set lookup instead of a failed attribute lookup (``add(t, 2.0)``; a shape tuple or list, as
# ``layer_norm(x, (64,), w, b)`` passes: ~0.2 us a call, measured). ember.nn.parameter adds
# Parameter and Buffer: ember's own subclasses, which never dispatch (see _setup_subclass),
# passed to every module's functional call (two _tensor_like calls, ~0.4 us, in LayerNorm's).
_PLAIN = {int, float, bool, complex, str, type(None), tuple, list}


def any_relevant(args: tuple, kwargs: dict) -> tuple:
    """The arguments of a call that may overload, positional then keyword (``out`` included),
    for the wrappers that dispatch on any argument (``_out_arg.py``, ``amp/_state.py``); the
    positional tuple itself when there are no keywords (no copy on the hot path)."""
    return (*args, *kwargs.values()) if kwargs else args


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


class DisableTorchFunctionSubclass(_no_subclass_dispatch):
    """``torch.DisableTorchFunctionSubclass``: within it, Tensor subclasses' own
    ``__torch_function__`` handlers are not called (in this thread); tensor-like objects that
    are not Tensors still dispatch."""


class DisableTorchFunction:
    """``torch.DisableTorchFunction``: within it, no ``__torch_function__`` handler is called
    (in this thread): functions run as written on subclasses and tensor-like arguments alike
    (auto_LiRPA's ``BoundedTensor`` handler runs ops under it)."""

    def __enter__(self) -> None:
        _STATE.off += 1
        _STATE.sub_off += 1

    def __exit__(self, *exc) -> None:
        _STATE.off -= 1
        _STATE.sub_off -= 1


def _disabled_torch_function_impl(cls, func, types, args=(), kwargs=None):
    """``torch._C._disabled_torch_function_impl``: a class that sets its
    ``__torch_function__`` to this runs functions as written (results not converted)."""
    with _no_subclass_dispatch():
        return func(*args, **(kwargs or {}))


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


def _is_pytorch_tensor_type(t: type) -> bool:
    """``t`` is real PyTorch's ``torch.Tensor`` or a subclass of it (never an ember type, even
    where a stand-in module named ``torch`` is ember itself)."""
    if issubclass(t, Tensor) or not t.__module__.startswith("torch"):
        return False
    torch = sys.modules.get("torch")
    base = getattr(torch, "Tensor", None)
    return isinstance(base, type) and base is not Tensor and issubclass(t, base)


def pytorch_tensor_error(where: str, t: type) -> TypeError:
    """The error for a real PyTorch tensor (of type ``t``) given to ember (``where``: the
    function, ``"stack()"``, or the kind of op)."""
    return TypeError(
        f"{where}: got a PyTorch tensor ({t.__module__}.{t.__qualname__}); ember "
        "functions take ember tensors: convert it with ember.tensor(x) or "
        "ember.from_numpy(x.numpy())"
    )


def handle_torch_function(
    public_api: Callable, relevant_args: Iterable[Any], *args: Any, **kwargs: Any
) -> Any:
    """Call ``__torch_function__`` of the overloading types among ``relevant_args`` for the
    call ``public_api(*args, **kwargs)``; the first result that is not ``NotImplemented`` is
    returned."""
    overloaded = _overloaded_types(relevant_args)
    types = tuple(t for t, _ in overloaded)
    for t, _ in overloaded:
        if _is_pytorch_tensor_type(t):
            # PyTorch's own ``__torch_function__`` calls the ember function again: a recursion
            # without end (a ``datasets`` ``with_format("torch")`` batch fed to ember, say)
            name = getattr(public_api, "__name__", None) or repr(public_api)
            raise pytorch_tensor_error(f"{name}()", t)
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


from ._function_mode import BaseTorchFunctionMode, TorchFunctionMode  # noqa: E402
