"""Subclassing :class:`~ember.tensor.Tensor` the ways PyTorch programs do.

``Tensor.__new__``'s legacy constructor forms (:func:`legacy_new`, what a subclass's
``super().__new__(cls, data)`` reaches), ``Tensor._make_subclass(cls, data, require_grad)`` (a
detached alias of ``data`` as a ``cls`` instance: ``nn.Parameter`` subclasses, the subclass
zoo's ``BaseTensor``), ``t.as_subclass(cls)`` (an alias that stays in the graph) and pickling of
subclass instances (their class, ``__dict__`` and extra slots come back, as
``torch._tensor._rebuild_from_type_v2`` does). Bound onto ``Tensor`` at the end of
``core/tensor.py``; none of this is on the path of plain tensor creation (``Tensor._wrap``).
"""

from __future__ import annotations

import numpy as np

from .backend.device import as_device

_new = object.__new__


def legacy_new(cls, args: tuple, device, requires_grad: bool) -> Tensor:
    """``Tensor.__new__``: torch.Tensor's legacy constructor, and what a subclass's
    ``super().__new__(cls, ...)`` reaches (flywhl/lab, auto_LiRPA): ``()``, ``(*sizes)``,
    ``(Size)``, ``(tensor)`` (an alias that keeps the graph, any dtype), ``(ndarray |
    sequence)`` (float32 data)."""
    data = args[0] if args else None
    if len(args) > 1 or type(data) is int or type(data) is Size:
        try:  # zero-filled here; PyTorch leaves it uninitialised
            data = np.zeros(tuple(data) if type(data) is Size else args, np.float32)
        except (TypeError, ValueError):
            raise TypeError(
                "new(): expected (*sizes), (data), (tensor) or (ndarray) but got "
                f"({', '.join(type(a).__name__ for a in args)})"
            ) from None
    elif data is None:
        data = np.empty((0,), dtype=np.float32)
    elif isinstance(data, Tensor):
        t = _alias(data, cls)
        if requires_grad:
            t.requires_grad_(True)
        return t if device is None else _to_device(t, device)
    elif isinstance(data, np.ndarray):
        # torch.Tensor(ndarray) is float32 whatever the array's dtype (CleanRL's
        # ``torch.Tensor(next_done)`` of a bool array); ember's own code wraps arrays of
        # other dtypes with Tensor._wrap
        if data.dtype != np.float32:
            data = data.astype(np.float32)
    elif isinstance(data, (str, bytes, dict, set)):
        raise TypeError(f"new(): invalid data type '{type(data).__name__}'")
    elif isinstance(data, (float, complex, bool)):
        raise TypeError(f"new(): data must be a sequence (got {type(data).__name__})")
    elif not hasattr(data, "__array_namespace__"):
        from .creation import _to_array

        data = _to_array(data, None, None)
        if isinstance(data, np.ndarray) and data.dtype != np.float32:
            # torch.Tensor([0]) is the legacy FloatTensor constructor: float32 whatever the
            # Python values (char_rnn's ``loss = torch.Tensor([0])``, then ``loss += l``)
            data = data.astype(np.float32)
    t = _new(cls)
    t._data = data
    t.requires_grad = requires_grad
    t.grad = None
    t.grad_fn = None
    t._output_nr = 0
    t._version_counter = [0]
    t._base = None
    t._hooks = None
    t._post_acc_hooks = None
    return t if device is None else _to_device(t, device)


def _to_device(t: Tensor, device) -> Tensor:
    """``t`` (a fresh tensor of the legacy constructor) moved to ``device`` in place."""
    dev = as_device(device)
    if dev != t.device:
        t._data = t.to(dev)._data
    return t


_SUBCLASS_ERROR = (
    "Creating a Tensor subclass from a class that does not inherit from Tensor is not possible. "
    "Make sure your class inherits from Tensor."
)


def _check_cls(cls) -> None:
    if not (isinstance(cls, type) and issubclass(cls, Tensor)):
        raise TypeError(_SUBCLASS_ERROR + f" (got {cls!r})")


def _fill(out: Tensor, src: Tensor) -> Tensor:
    """Give the fresh instance ``out`` the tensor slots of ``src`` (no ``__init__`` runs)."""
    out._data = src._data
    out.requires_grad = src.requires_grad
    out.grad = None
    out.grad_fn = src.grad_fn
    out._output_nr = src._output_nr
    out._version_counter = src._version_counter
    out._base = src._base
    out._hooks = None
    out._post_acc_hooks = None
    return out


def _alias(data: Tensor, cls: type) -> Tensor:
    """A ``cls`` instance sharing ``data``'s storage and version counter; where ``data``
    requires grad (and grad mode is on) it is an autograd view of it (PyTorch's
    ``AliasBackward0``), so gradients reach ``data``."""
    from .autograd import grad_mode

    if data.requires_grad and grad_mode._state.enabled:
        src = data.view_as(data)  # a view node: the result is not a second leaf
    else:
        src = data.detach()
    return _fill(object.__new__(cls), src)


def _make_subclass(
    cls,
    data,
    require_grad: bool = False,
    dispatch_strides: bool = False,
    dispatch_device: bool = False,
    device_for_backend_keys=None,
) -> Tensor:
    r"""``torch.Tensor._make_subclass``: a ``cls`` instance that is a detached alias of
    ``data`` (same storage and version counter), a leaf with ``requires_grad=require_grad``.
    The ``dispatch_*`` arguments are accepted for compatibility (there is no dispatcher)."""
    _check_cls(cls)
    if not isinstance(data, Tensor):
        raise TypeError(
            f"_make_subclass(): argument 'data' (position 2) must be Tensor, not "
            f"{type(data).__name__}"
        )
    if require_grad and not (data.is_floating_point() or data.is_complex()):
        raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
    t = _fill(object.__new__(cls), data)
    t.requires_grad = bool(require_grad)
    t.grad_fn, t._output_nr, t._base = None, 0, None  # a leaf, as a Parameter is
    return t


def _make_wrapper_subclass(cls, size, *args, **kwargs) -> Tensor:
    r"""``torch.Tensor._make_wrapper_subclass(cls, size, strides=..., dtype=..., device=...,
    requires_grad=...)``: a ``cls`` instance with that metadata and no data of its own, whose
    ops reach ``cls.__torch_dispatch__`` (core/_dispatch.py, docs/torch_dispatch.md)."""
    from ._dispatch import make_wrapper_subclass

    return make_wrapper_subclass(cls, size, *args, **kwargs)


def as_subclass(self, cls) -> Tensor:
    r"""Makes a ``cls`` instance with the same data as ``self``: changes in the output mirror
    changes in ``self``, and the output stays attached to the autograd graph. ``cls`` must be
    a subclass of ``Tensor``.

    Example::

        >>> class Meters(ember.Tensor):
        ...     pass
        >>> ember.ones(2).as_subclass(Meters)
        Meters([1., 1.])
    """
    _check_cls(cls)
    return _alias(self, cls)


def _extra_state(t: Tensor) -> dict:
    """What a subclass instance holds beyond the tensor slots: its ``__dict__`` and the values
    of slots its classes add."""
    state = dict(getattr(t, "__dict__", {}))
    for klass in type(t).__mro__:
        if klass is Tensor:
            break
        slots = klass.__dict__.get("__slots__", ())
        for name in (slots,) if isinstance(slots, str) else slots:
            if name not in ("__dict__", "__weakref__") and hasattr(t, name):
                state[name] = getattr(t, name)
    return state


def _rebuild_subclass(cls, plain: Tensor, state: dict) -> Tensor:
    """Unpickle a subclass instance: the plain tensor as ``cls`` (``cls.__new__`` does not
    run, as in PyTorch), then its state (``__setstate__`` where the class has one)."""
    t = _fill(object.__new__(cls), plain)
    if state:
        if _own_setstate(cls):
            t.__setstate__(state)
        else:
            for k, v in state.items():
                object.__setattr__(t, k, v)
    return t


def _own_setstate(cls) -> bool:
    """Whether a class between ``cls`` and ``Tensor`` defines ``__setstate__`` (Tensor's own
    restores legacy pickles; a subclass's method-dispatch wrapper of it does not count)."""
    base = Tensor.__dict__.get("__setstate__")
    for klass in cls.__mro__:
        if klass is Tensor:
            return False
        f = klass.__dict__.get("__setstate__")
        if f is not None and f is not base and getattr(f, "__wrapped__", None) is not base:
            return True
    return False


# Imported last, as in _tensor_convert.py: core/tensor.py imports this module at its end.
from .tensor import Size, Tensor  # noqa: E402
