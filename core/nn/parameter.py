"""``nn.Parameter``, ``nn.Buffer`` and the uninitialized placeholders of lazy modules.

A Parameter is a Tensor subclass: assigning one to a Module attribute registers it. It shares
storage and version counter with the tensor it wraps (``Parameter(t)`` is a detached alias of
``t``, as in PyTorch). Ops on parameters return plain Tensors.
"""

from __future__ import annotations

import numpy as np

from ..backend.device import as_device, get_array_module
from ..backend.dtype import get_default_dtype, to_dtype
from ..backend.meta import MetaArray
from ..tensor import Tensor

__all__ = ["Parameter", "Buffer", "UninitializedParameter", "is_lazy"]


def _init_alias(t: Tensor, data: Tensor, requires_grad: bool) -> None:
    """Fill the slots of a fresh subclass instance ``t`` as a detached alias of ``data``."""
    if requires_grad and not (data.is_floating_point() or data.is_complex()):
        raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
    t._data = data._data
    t.requires_grad = bool(requires_grad)
    t.grad = None
    t.grad_fn = None
    t._output_nr = 0
    t._version_counter = data._version_counter
    t._base = None
    t._hooks = None
    t._post_acc_hooks = None


def _as_tensor(data) -> Tensor:
    if data is None:
        return Tensor._wrap(np.empty((0,), dtype=get_default_dtype().np))
    if not isinstance(data, Tensor):
        raise TypeError(f"Parameter/Buffer data must be a Tensor, but got {type(data).__name__}")
    return data


def is_wrapper_param(value) -> bool:
    """``nn.Parameter(w)`` of a ``__torch_dispatch__`` wrapper subclass ``w`` (core/_dispatch.py):
    ``w``'s own type, marked ``_is_param`` as torch marks it; Module registers it as a
    parameter (``isinstance(w, Parameter)`` stays False here: no metaclass check taxes every
    other isinstance test)."""
    return (
        type(getattr(value, "_data", None)).__name__ == "WrapperData"
        and getattr(value, "__dict__", {}).get("_is_param", False) is True
    )


class Parameter(Tensor):
    r"""A Tensor that is a module parameter.

    Args:
        data (Tensor): parameter tensor (shared, not copied).
        requires_grad (bool, optional): if the parameter requires gradient. Default: ``True``.
    """

    def __new__(cls, data: Tensor | None = None, requires_grad: bool = True):
        as_parameter = getattr(type(data), "_as_parameter", None)
        if cls is Parameter and as_parameter is not None:
            # a tensor type outside core says how it becomes a parameter: nn.Parameter(dtensor)
            # is a DTensorParameter, as PyTorch's is a Parameter holding the DTensor
            return as_parameter(data, requires_grad)
        if cls is Parameter and type(getattr(data, "_data", None)).__name__ == "WrapperData":
            # a __torch_dispatch__ wrapper subclass stays itself (torch: ``_is_param``)
            p = data.detach()
            p.requires_grad = bool(requires_grad)
            p._is_param = True
            return p
        p = object.__new__(cls)
        _init_alias(p, _as_tensor(data), requires_grad)
        return p

    def __init__(self, *args, **kwargs):
        # everything happens in __new__; as PyTorch's, __init__ takes whatever a subclass's
        # __new__ does (``DPParameter(data, requires_dp=False)``) and ignores it
        pass

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __reduce_ex__(self, protocol):
        # (a meta parameter has no data to copy out: it pickles as its MetaArray, as torch
        # pickles a meta tensor, e.g. torchrl's meta-device policy copy sent to its workers)
        data = self._data if type(self._data) in (np.ndarray, MetaArray) else self._data.get()
        return (
            _rebuild_parameter,
            (type(self), data, self.requires_grad, str(self.device), dict(self.__dict__)),
        )

    def __deepcopy__(self, memo):
        if id(self) in memo:
            return memo[id(self)]
        result = type(self)(Tensor._wrap(self._data.copy()), self.requires_grad)
        memo[id(self)] = result
        if self.__dict__:
            import copy

            result.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return result


#: torch.nn.parameter._ParameterMeta, the metaclass of PyTorch's Parameter (its isinstance
#: check also accepts tensors marked ``_is_param``); ember's Parameter is a plain class, so
#: this is ``type`` and ``type(Parameter) is _ParameterMeta`` holds as in PyTorch
_ParameterMeta = type(Parameter)


def _rebuild_parameter(cls, data, requires_grad, dev, state):
    t = Tensor._wrap(data)
    if dev != "cpu":
        t = t.to(dev)
    p = cls(t, requires_grad)
    p.__dict__.update(state)
    return p


class Buffer(Tensor):
    r"""A Tensor that becomes a module buffer when assigned to a Module attribute.

    Args:
        data (Tensor): buffer tensor (shared, not copied).
        persistent (bool, optional): whether the buffer is part of the module's ``state_dict``.
            Default: ``True``.
    """

    def __new__(cls, data: Tensor | None = None, *, persistent: bool = True):
        b = object.__new__(cls)
        data = _as_tensor(data)
        _init_alias(b, data, data.requires_grad)
        b.persistent = persistent
        return b

    def __init__(self, *args, **kwargs):
        pass  # (as Parameter's)

    def _as_plain(self) -> Tensor:
        """The plain Tensor a module stores for this buffer (same storage and version)."""
        t = Tensor._wrap(self._data)
        t._version_counter = self._version_counter
        t.requires_grad = self.requires_grad
        return t


class _UninitializedMixin:
    """Placeholder data of a lazy module; ``materialize`` gives it a shape and a real class."""

    cls_to_become: type = Parameter

    def materialize(self, shape, device=None, dtype=None) -> None:
        r"""Create storage of ``shape`` (uninitialized values) and become ``cls_to_become``."""
        dev = as_device(device) if device is not None else self._lazy_device
        dt = to_dtype(dtype) if dtype is not None else self._lazy_dtype
        xp = get_array_module(dev)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        self._data = xp.empty(shape, dtype=dt.np)
        self._version_counter = [0]
        self.__class__ = self.cls_to_become
        for k in ("_lazy_device", "_lazy_dtype"):
            self.__dict__.pop(k, None)

    @property
    def shape(self):
        raise ValueError(
            "Attempted to use an uninitialized parameter in <shape>. This error happens when you "
            "are using a `LazyModule` or explicitly manipulating "
            "`ember.nn.parameter.UninitializedParameter` objects. When using LazyModules Call "
            "`forward` with a dummy batch to initialize the parameters before calling ember "
            "functions"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"

    def __reduce_ex__(self, protocol):
        return (type(self), (self.requires_grad, str(self._lazy_device), self._lazy_dtype))

    def __deepcopy__(self, memo):
        out = type(self)(self.requires_grad, self._lazy_device, self._lazy_dtype)
        memo[id(self)] = out
        return out


class UninitializedParameter(_UninitializedMixin, Parameter):
    r"""A parameter whose shape is not known yet (used by ``LazyLinear`` and friends)."""

    cls_to_become = Parameter

    def __new__(cls, requires_grad: bool = True, device=None, dtype=None):
        p = Parameter.__new__(cls, None, False)
        p.requires_grad = requires_grad
        p._lazy_device = as_device(device if device is not None else "cpu")
        p._lazy_dtype = to_dtype(dtype) if dtype is not None else get_default_dtype()
        return p

    def __init__(self, requires_grad: bool = True, device=None, dtype=None):
        pass


def is_lazy(param) -> bool:
    """Whether ``param`` is an uninitialized placeholder of a lazy module."""
    return isinstance(param, _UninitializedMixin)


class _MaterializedBuffer(Tensor):
    """What an ``UninitializedBuffer`` becomes: a plain tensor (a subclass only because a
    slotted ``Tensor`` cannot take over an instance that has a ``__dict__``)."""


class UninitializedBuffer(_UninitializedMixin, Tensor):
    r"""A buffer whose shape is not known yet (running statistics of ``LazyBatchNorm``)."""

    cls_to_become = _MaterializedBuffer

    def __new__(cls, requires_grad: bool = False, device=None, dtype=None, persistent: bool = True):
        b = object.__new__(cls)
        _init_alias(b, _as_tensor(None), False)
        b.requires_grad = requires_grad
        b.persistent = persistent
        b._lazy_device = as_device(device if device is not None else "cpu")
        b._lazy_dtype = to_dtype(dtype) if dtype is not None else get_default_dtype()
        return b

    def __init__(
        self, requires_grad: bool = False, device=None, dtype=None, persistent: bool = True
    ):
        pass


__all__ += ["UninitializedBuffer"]

#: torch.nn.parameter.UninitializedTensorMixin: the base of the lazy placeholders (libraries
#: test ``isinstance(x, UninitializedTensorMixin)``)
UninitializedTensorMixin = _UninitializedMixin
__all__ += ["UninitializedTensorMixin"]

# Parameter and Buffer never dispatch to a __torch_function__ (ember's own subclasses, as a
# plain Tensor): the wrappers that test every argument skip them with one set lookup
from .. import overrides as _overrides  # noqa: E402

_overrides._PLAIN.update((Parameter, Buffer))
