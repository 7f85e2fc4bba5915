"""``ember.overrides``: PyTorch's ``__torch_function__`` protocol (``torch.overrides``).

A type (a tensor-like class, or a ``Tensor`` subclass) that defines the class method::

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None): ...

receives the calls of the participating functions made with one of its instances among the
tensor arguments: ``func`` is the public function (``ember.view_as_complex``,
``ember.nn.functional.scaled_dot_product_attention`` ...), ``types`` the overloading types
found, ``args``/``kwargs`` the call's. Returning ``NotImplemented`` passes to the next type;
when every type declines, a ``TypeError`` names the function and the types.

Participating for any overloading type (``Tensor`` subclasses included):
``nn.functional.scaled_dot_product_attention``, ``silu``, ``gelu``, ``softmax``, ``dropout``;
``ember.view_as_complex``, ``view_as_real``, ``polar``, ``outer``, ``matmul``, ``cat``,
``stack``. Every other public function of ``ember.nn.functional``, and the ``ember.*``
functions that take ``out=`` or follow autocast, hand the call over when their first tensor
argument (``F.embedding``: its ``weight`` too) is a tensor-like object that is not a
``Tensor`` (``DTensor``, a user's wrapper class); on plain tensors that costs one exact-type
test, fused into the wrapper those functions already have (``_torch_function.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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


def _overloads(x) -> bool:
    t = type(x)
    return t is not Tensor and getattr(t, "__torch_function__", None) is not None


# Set while a ``__torch_function__`` handler runs a function as written on its tensor-like
# arguments (``_no_tensor_like_dispatch``): the broad set of functions then does not hand the
# call back (the bounded set, which Tensor subclasses use, is not affected).
_TENSOR_LIKE_OFF = [0]


def _tensor_like(x) -> bool:
    """``x`` is not a Tensor and its type defines ``__torch_function__`` (the broad set's test,
    made after ``type(x) is not Tensor``)."""
    return (
        not _TENSOR_LIKE_OFF[0]
        and not isinstance(x, Tensor)
        and getattr(type(x), "__torch_function__", None) is not None
    )


class _no_tensor_like_dispatch:
    """Run functions of the broad set as written on tensor-like arguments (duck typing): what a
    handler does for a function it has no rule for."""

    def __enter__(self) -> None:
        _TENSOR_LIKE_OFF[0] += 1

    def __exit__(self, *exc) -> None:
        _TENSOR_LIKE_OFF[0] -= 1


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
        result = t.__torch_function__(public_api, types, args, kwargs)
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
