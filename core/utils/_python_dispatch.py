"""``ember.utils._python_dispatch`` (``torch.utils._python_dispatch``): dispatch modes and
the helpers of wrapper subclasses (docs/torch_dispatch.md; the machinery: core/_dispatch.py).

A :class:`TorchDispatchMode` sees every ember op called while it is entered, below autograd,
as an ``aten.<op>.<overload>`` object; ``func(*args, **kwargs)`` inside its handler runs the
op (through the next outer mode first). Backward nodes reach it as
``aten.<op>_backward.default(*grads)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .. import _dispatch

__all__ = [
    "TorchDispatchMode",
    "is_traceable_wrapper_subclass",
    "is_traceable_wrapper_subclass_type",
    "return_and_correct_aliasing",
    "transform_subclass",
]


class TorchDispatchMode:
    """A context manager whose ``__torch_dispatch__(func, types, args=(), kwargs=None)`` is
    called for every ember op run while it is active; subclass it and override that method.

    Example::

        >>> class Log(TorchDispatchMode):
        ...     def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        ...         print(func)
        ...         return func(*args, **(kwargs or {}))
        >>> with Log():
        ...     _ = ember.ones(2).relu()
        aten.relu.default
    """

    def __init__(self, _dispatch_key=None) -> None:
        self._dispatch_key = _dispatch_key

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        raise NotImplementedError(f"{type(self).__name__} must define __torch_dispatch__")

    def __enter__(self):
        _dispatch.push_mode(self)
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        _dispatch.pop_mode(self)

    @classmethod
    def push(cls, *args: Any, **kwargs: Any) -> TorchDispatchMode:
        """Make an instance and enter it (torch's deprecated ``Mode.push``)."""
        return cls(*args, **kwargs).__enter__()

    @classmethod
    def is_infra_mode(cls) -> bool:
        return False


def _get_current_dispatch_mode():
    """The innermost active dispatch mode of this thread, or None."""
    st = _dispatch.mode_stack()
    return st[-1] if st else None


def _get_current_dispatch_mode_stack() -> list:
    """The active dispatch modes of this thread, outermost first."""
    return list(_dispatch.mode_stack())


def _len_torch_dispatch_stack() -> int:
    return len(_dispatch.mode_stack())


def _push_mode(mode: TorchDispatchMode) -> None:
    _dispatch.push_mode(mode)


def _pop_mode(k=None) -> TorchDispatchMode:
    return _dispatch.pop_mode()


@contextlib.contextmanager
def _pop_mode_temporarily(k=None) -> Iterator[TorchDispatchMode]:
    """Take the innermost mode off this thread's stack for the block; yields it."""
    st = _dispatch.mode_stack()
    if not st:
        raise RuntimeError("_pop_mode_temporarily: no TorchDispatchMode is active")
    mode = st.pop()
    try:
        yield mode
    finally:
        st.append(mode)


@contextlib.contextmanager
def _disable_current_modes() -> Iterator[list]:
    """No dispatch mode of this thread for the block; yields them, outermost first."""
    st = _dispatch.mode_stack()
    saved = st[:]
    del st[:]
    try:
        yield saved
    finally:
        st[:0] = saved


def is_traceable_wrapper_subclass(t: Any) -> bool:
    """Whether ``t`` is a wrapper subclass instance with ``__tensor_flatten__`` and
    ``__tensor_unflatten__`` (torchao's and PyG's subclasses are)."""
    return _dispatch.is_wrapper(t) and is_traceable_wrapper_subclass_type(type(t))


def is_traceable_wrapper_subclass_type(t: type) -> bool:
    from ..tensor import Tensor

    return (
        isinstance(t, type)
        and issubclass(t, Tensor)
        and t is not Tensor
        and hasattr(t, "__tensor_flatten__")
        and hasattr(t, "__tensor_unflatten__")
    )


def transform_subclass(t, callback, outer_size=None, outer_stride=None):
    """Rebuild traceable wrapper subclass ``t`` with ``callback(name, inner)`` applied to each
    inner tensor (``__tensor_flatten__`` / ``__tensor_unflatten__``)."""
    names, ctx = t.__tensor_flatten__()
    from .._dispatch_ops import user_attr

    inner = {n: callback(n, user_attr(t, n)) for n in names}
    outer_size = t.size() if outer_size is None else outer_size
    outer_stride = t.stride() if outer_stride is None else outer_stride
    return type(t).__tensor_unflatten__(inner, ctx, outer_size, outer_stride)


def return_and_correct_aliasing(func, args, kwargs, out):
    """What a subclass's ``__torch_dispatch__`` returns for ``func``: ``out``, or the mutated
    first argument for an in-place op (its name ends in ``_``), as torch's helper does. ember
    tensors keep no storage aliasing metadata to correct, so views are returned as made."""
    name = getattr(func, "_name", getattr(func, "__name__", ""))
    if name.endswith("_") and not name.endswith("__") and args:
        return args[0]
    return out
