"""The participating side of PyTorch's ``__torch_function__`` protocol (see ``ember.overrides``).

A function decorated with :func:`torch_function_dispatch` hands the call to
``type(arg).__torch_function__`` when one of its tensor arguments is not an ``ember.Tensor``
but an object whose type defines ``__torch_function__`` (``DTensor``, a user's tensor-like
class). The check is made on the first ``n`` positional arguments only (the tensors), with an
exact-type test first, so an ordinary call pays one ``type(x) is Tensor`` per argument.

That bounded list (the functions tensor-parallel model code calls on DTensors that are not
Tensor methods; docs/api.md, "ember.overrides") dispatches any overloading type. The rest of
``ember.nn.functional`` and the ``ember.*`` functions with an ``out=`` or autocast wrapper
dispatch tensor-like objects that are not Tensors (:func:`tensor_like_dispatch`, and the same
test fused into those wrappers: ``_out_arg.py``, ``amp/_state.py``): a wrapper of its own costs
a call frame, ~8% of ``F.relu`` on a small tensor (measured), one exact-type test in a wrapper
that exists anyway costs under 1%; the hottest plain functions (``F.relu``, ``F.embedding``)
test inline. Core never imports ``ember.distributed``: the DTensor side lives in
``distributed/tensor/_torch_function.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from .overrides import _overloads, _tensor_like, handle_torch_function
from .tensor import Tensor

__all__ = ["torch_function_dispatch", "tensor_like_dispatch", "install_tensor_like_dispatch"]


def torch_function_dispatch(n: int = 1, *, sequence: bool = False) -> Callable:
    """Make the decorated function participate in ``__torch_function__``: its first ``n``
    positional arguments are the relevant ones (with ``sequence=True``, the first argument is
    a list of tensors, as for ``cat``/``stack``, and its items are)."""

    def decorate(fn: Callable) -> Callable:
        if sequence:

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                if args:
                    seq = args[0]
                    if isinstance(seq, (list, tuple)):
                        for x in seq:
                            # plain tensors leave at the exact-type test (the hot path)
                            if type(x) is not Tensor and _overloads(x):
                                return handle_torch_function(wrapper, seq, *args, **kwargs)
                return fn(*args, **kwargs)

        elif n == 1:

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                if args and type(args[0]) is not Tensor and _overloads(args[0]):
                    return handle_torch_function(wrapper, args[:1], *args, **kwargs)
                return fn(*args, **kwargs)

        else:

            @functools.wraps(fn)
            def wrapper(*args, **kwargs):
                for x in args[:n]:
                    if type(x) is not Tensor and _overloads(x):
                        return handle_torch_function(wrapper, args[:n], *args, **kwargs)
                return fn(*args, **kwargs)

        wrapper.__wrapped__ = fn
        wrapper.__ember_torch_function__ = True  # listed by overrides.get_overridable_functions
        return wrapper

    return decorate


def tensor_like_dispatch(fn: Callable, n: int = 1) -> Callable:
    """``fn`` handing the call to ``__torch_function__`` when one of its first ``n`` positional
    arguments is a tensor-like object that is not a Tensor (see the module docstring)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        for x in args[:n]:
            if type(x) is not Tensor and _tensor_like(x):
                return handle_torch_function(wrapper, args[:n], *args, **kwargs)
        return fn(*args, **kwargs)

    wrapper.__ember_torch_function__ = True
    return wrapper


def install_tensor_like_dispatch(
    namespace: dict, names, inline=(), relevant: dict | None = None
) -> None:
    """Wrap each function ``names`` in ``namespace`` with :func:`tensor_like_dispatch` (those
    already participating are left alone); ``inline`` ones test in their own body and are only
    marked; ``relevant`` gives ``n`` per name (default 1)."""
    relevant = relevant or {}
    for name in names:
        fn = namespace.get(name)
        if not callable(fn) or isinstance(fn, type) or getattr(fn, "__ember_torch_function__", 0):
            continue
        if name in inline:
            fn.__ember_torch_function__ = True
        else:
            namespace[name] = tensor_like_dispatch(fn, relevant.get(name, 1))
