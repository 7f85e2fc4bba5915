"""What operations on a ``tv_tensors.TVTensor`` return: torchvision's ``set_return_type``.

torchvision gets this from ``__torch_function__``; an ember ``Tensor`` subclass is not
dispatched that way, so :func:`install_methods` gives ``TVTensor`` a thin override of each
public ``Tensor`` method (and of the arithmetic operators) that re-wraps tensor results when
they must keep the subclass: always for ``clone``, ``to``, ``detach``, ``requires_grad_`` and
``pin_memory`` (as torchvision), for every method while ``set_return_type("TVTensor")`` is in
force. Functions of the ``ember`` namespace (``ember.add(img, 1)``) return plain tensors.
"""

from __future__ import annotations

import inspect
import types

__all__ = ["set_return_type"]

_state = {"subclass": False}

# the methods whose result keeps the TVTensor type whatever the return type (torchvision's
# _FORCE_TORCHFUNCTION_SUBCLASS)
_FORCE = frozenset({"clone", "to", "detach", "requires_grad_", "pin_memory"})

# methods left alone: they hand out other types on purpose, or ember's own machinery calls them
_SKIP = frozenset(
    {"as_subclass", "wrap", "as_subclass_of_tensor", "numpy", "tolist", "item", "backward"}
)

_OPERATORS = (
    "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
    "__rtruediv__", "__floordiv__", "__rfloordiv__", "__mod__", "__rmod__", "__pow__",
    "__rpow__", "__matmul__", "__rmatmul__", "__neg__", "__pos__", "__abs__", "__invert__",
    "__and__", "__rand__", "__or__", "__ror__", "__xor__", "__rxor__", "__lt__", "__le__",
    "__gt__", "__ge__", "__getitem__",
)  # fmt: skip


class _ReturnTypeCM:
    def __init__(self, to_restore: bool) -> None:
        self.to_restore = to_restore

    def __enter__(self) -> _ReturnTypeCM:
        return self

    def __exit__(self, *args) -> None:
        _state["subclass"] = self.to_restore


def set_return_type(return_type: str) -> _ReturnTypeCM:
    """Set what operations on a :class:`~ember.vision.tv_tensors.TVTensor` return:
    ``"Tensor"`` (plain tensors, the default) or ``"TVTensor"`` (the input's type and
    metadata), case-insensitive. Works as a global switch and as a context manager::

        img = tv_tensors.Image(ember.rand(3, 5, 5))
        img + 2  # a plain Tensor
        with tv_tensors.set_return_type("TVTensor"):
            img + 2  # an Image

    transforms and ``transforms.v2.functional`` return their input's type either way.
    """
    to_restore = _state["subclass"]
    try:
        _state["subclass"] = {"tensor": False, "tvtensor": True}[return_type.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"return_type must be 'TVTensor' or 'Tensor', got {return_type}") from None
    return _ReturnTypeCM(to_restore)


def _override(name: str, base):
    forced = name in _FORCE

    def method(self, *args, **kwargs):
        out = base(self, *args, **kwargs)
        if forced or _state["subclass"]:
            return type(self)._wrap_output(out, self)
        return out

    method.__name__ = method.__qualname__ = name
    method.__doc__ = getattr(base, "__doc__", None)
    return method


def install_methods(tv_cls: type, tensor_cls: type) -> None:
    """Give ``tv_cls`` the overrides of ``tensor_cls``'s public methods and operators."""
    names = list(_OPERATORS)
    for name in dir(tensor_cls):
        if name.startswith("_") or name in _SKIP or name in tv_cls.__dict__:
            continue
        attr = inspect.getattr_static(tensor_cls, name)
        if isinstance(attr, (types.FunctionType, types.BuiltinFunctionType)):
            names.append(name)
    for name in names:
        base = getattr(tensor_cls, name, None)
        if base is not None and callable(base):
            setattr(tv_cls, name, _override(name, base))
