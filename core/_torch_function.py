"""The participating side of PyTorch's ``__torch_function__`` protocol (see ``ember.overrides``).

A function decorated with :func:`torch_function_dispatch` hands the call to
``type(arg).__torch_function__`` when one of its tensor arguments is not an ``ember.Tensor``
but an object whose type defines ``__torch_function__`` (``DTensor``, a user's tensor-like
class). The check is made on the first ``n`` positional arguments only (the tensors), with an
exact-type test first, so an ordinary call pays one ``type(x) is Tensor`` per argument.

Only a bounded list of functions participates: the ones tensor-parallel model code calls on
DTensors that are not Tensor methods (docs/api.md, "ember.overrides"). Core never imports
``ember.distributed``: the DTensor side lives in ``distributed/tensor/_torch_function.py``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from .overrides import _overloads, handle_torch_function
from .tensor import Tensor

__all__ = ["torch_function_dispatch"]


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
