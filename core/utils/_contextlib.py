"""``torch.utils._contextlib``: context managers that also decorate functions and generators.

Libraries (tensordict's ``set_lazy_legacy``, ``set_interaction_type``) subclass
``_DecoratorContextManager``: the subclass writes ``__enter__``/``__exit__`` (and ``clone`` if
its ``__init__`` takes arguments), and ``@ctx_instance`` then runs the decorated function (or
every step of a decorated generator) inside a fresh clone of the context.
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["_DecoratorContextManager", "_NoParamDecoratorContextManager", "context_decorator"]


def _wrap_generator(ctx_factory: Callable[[], Any], func: Callable) -> Callable:
    # a generator's body runs in pieces, between the caller's next()/send()/throw(): enter the
    # context around each piece only, so the caller's code between steps runs outside it
    @functools.wraps(func)
    def generator_context(*args: Any, **kwargs: Any):
        gen = func(*args, **kwargs)
        try:
            with ctx_factory():
                response = gen.send(None)
            while True:
                try:
                    request = yield response
                except GeneratorExit:
                    with ctx_factory():
                        gen.close()
                    raise
                except BaseException:
                    with ctx_factory():
                        response = gen.throw(*sys.exc_info())
                else:
                    with ctx_factory():
                        response = gen.send(request)
        except StopIteration as e:
            return e.value

    return generator_context


def context_decorator(ctx: Any, func: Callable) -> Callable:
    r"""``func`` run inside ``ctx``: a context-manager factory (called once per call), or a
    context manager itself (which must be re-enterable, as it is reused)."""
    if inspect.isclass(func):
        raise RuntimeError(
            "Cannot decorate classes; it is ambiguous whether only the constructor or all "
            "methods should have the context manager applied; decorate the methods instead"
        )
    if not callable(func):
        raise TypeError(f"context_decorator: expected a callable, got {type(func).__name__}")
    if callable(ctx):
        ctx_factory = ctx
    else:

        def ctx_factory() -> Any:
            return ctx

    if inspect.isgeneratorfunction(func):
        return _wrap_generator(ctx_factory, func)

    @functools.wraps(func)
    def decorate_context(*args: Any, **kwargs: Any) -> Any:
        with ctx_factory():
            return func(*args, **kwargs)

    return decorate_context


class _DecoratorContextManager:
    r"""A context manager that is also a decorator: ``@ctx`` runs the function inside
    ``ctx.clone()`` (a fresh instance per call). Subclasses define ``__enter__``/``__exit__``."""

    def __call__(self, orig_func: Callable) -> Callable:
        if inspect.isclass(orig_func):
            warnings.warn(
                "Decorating classes is deprecated and will be disabled in future versions. "
                "You should only decorate functions or methods. To preserve the current "
                "behavior of class decoration, you can directly decorate the `__init__` "
                "method and nothing else.",
                FutureWarning,
                stacklevel=2,
            )

            def func(*args: Any, **kwargs: Any) -> Any:
                return orig_func(*args, **kwargs)

        else:
            func = orig_func
        return context_decorator(self.clone, func)

    def __enter__(self) -> None:
        raise NotImplementedError

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        raise NotImplementedError

    def clone(self) -> _DecoratorContextManager:
        # override when __init__ takes arguments
        return self.__class__()


class _NoParamDecoratorContextManager(_DecoratorContextManager):
    r"""A :class:`_DecoratorContextManager` that also decorates without parentheses
    (``@ctx_class`` as well as ``@ctx_class()``)."""

    def __new__(cls, orig_func: Callable | None = None):
        if orig_func is None:
            return super().__new__(cls)
        return cls()(orig_func)
