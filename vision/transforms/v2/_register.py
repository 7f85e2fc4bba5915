"""``register_kernel``: users' kernels for their own ``TVTensor`` subclasses, and the
dispatch of ``v2.functional``'s functionals on ``Video`` and on those subclasses.

Every public functional of ``v2.functional`` is wrapped once (:func:`install`): a ``Video``
runs the plain-tensor kernel and comes back a ``Video``; an instance of a user's ``TVTensor``
subclass runs the kernel registered for its class (or a base class, stopping at ``TVTensor``),
or is refused with a ``TypeError`` naming the functional. v2 transforms hand such instances
to the same functionals and pass them through untouched when no kernel is registered, as
torchvision does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ember.tensor import Tensor

from ... import tv_tensors as tv

__all__ = ["register_kernel"]

# {functional: {tv_tensor class: kernel}}
_KERNEL_REGISTRY: dict[Callable, dict[type, Callable]] = {}
_BUILTIN = (tv.Image, tv.Video, tv.Mask, tv.BoundingBoxes, tv.KeyPoints)
_NAMESPACE: dict[str, Callable] = {}  # the wrapped functionals by name
# set while a transform runs a custom leaf: no kernel means "pass it through"
_passthrough = {"on": False, "used": False}


class _NoKernel(Exception):
    pass


def is_custom(inpt) -> bool:
    """Whether ``inpt`` is an instance of a user's ``TVTensor`` subclass."""
    return isinstance(inpt, tv.TVTensor) and not isinstance(inpt, _BUILTIN)


def _find(functional: Callable, cls: type):
    registry = _KERNEL_REGISTRY.get(functional, {})
    for klass in cls.__mro__:
        if klass in registry:
            return registry[klass]
        if klass is tv.TVTensor:
            break  # a user's type never falls back on the plain-tensor kernel
    return None


def _rewrap_video(out, like):
    if isinstance(out, Tensor) and not isinstance(out, tv.TVTensor):
        return tv.Video._from_array(out._data)
    if isinstance(out, (list, tuple)):
        return type(out)(_rewrap_video(o, like) for o in out)
    return out


def _dispatching(fn: Callable) -> Callable:
    @functools.wraps(fn)
    def functional(inpt, *args, **kwargs):
        if type(inpt) is tv.Video:
            return _rewrap_video(fn(Tensor._wrap(inpt._data), *args, **kwargs), inpt)
        if is_custom(inpt):
            kernel = _find(functional, type(inpt))
            if kernel is not None:
                _passthrough["used"] = True
                return kernel(inpt, *args, **kwargs)
            if _passthrough["on"]:
                raise _NoKernel
            raise TypeError(
                f"Functional F.{fn.__name__} has no kernel for inputs of type {type(inpt)}; "
                "register one with transforms.v2.functional.register_kernel"
            )
        return fn(inpt, *args, **kwargs)

    functional.__wrapped__ = fn
    functional._dispatches = True
    return functional


def install(namespace: dict, names: list[str]) -> None:
    """Replace each functional ``names`` in ``namespace`` by its dispatching wrapper (aliases
    such as ``hflip`` / ``horizontal_flip`` stay one object)."""
    done: dict[int, Callable] = {}
    for name in dict.fromkeys(names):
        fn = namespace.get(name)
        if not callable(fn) or isinstance(fn, type) or getattr(fn, "_dispatches", False):
            continue
        if id(fn) not in done:
            done[id(fn)] = _dispatching(fn)
        namespace[name] = _NAMESPACE[name] = done[id(fn)]


def register_kernel(functional: Callable | str, tv_tensor_cls: type) -> Callable:
    """Decorate a kernel to register it for a functional of ``transforms.v2.functional`` and
    a user's :class:`~ember.vision.tv_tensors.TVTensor` subclass::

        class MyTVTensor(tv_tensors.TVTensor):
            pass

        @F.register_kernel(functional="hflip", tv_tensor_cls=MyTVTensor)
        def hflip_my_tv_tensor(my_dp, *args, **kwargs):
            return tv_tensors.wrap(my_dp.flip(-1), like=my_dp)

    ``F.hflip(x)`` and ``v2.RandomHorizontalFlip(p=1)(x)`` then call it for ``MyTVTensor``
    inputs (the kernel gets the instance itself and returns what the functional should).
    """
    if isinstance(functional, str):
        fn = _NAMESPACE.get(functional)
        if fn is None:
            raise ValueError(
                f"Could not find functional with name '{functional}' in "
                "ember.vision.transforms.v2.functional."
            )
        functional = fn
    elif functional not in _NAMESPACE.values():
        raise ValueError(
            "Kernels can only be registered on functionals from the "
            f"ember.vision.transforms.v2.functional namespace, but got {functional}."
        )
    if not (isinstance(tv_tensor_cls, type) and issubclass(tv_tensor_cls, tv.TVTensor)):
        raise ValueError(
            "Kernels can only be registered for subclasses of ember.vision.tv_tensors.TVTensor, "
            f"but got {tv_tensor_cls}."
        )
    if tv_tensor_cls is tv.TVTensor or tv_tensor_cls in _BUILTIN:
        raise ValueError(
            "Kernels cannot be registered for the builtin tv_tensor classes, but got "
            f"{tv_tensor_cls}"
        )
    registry = _KERNEL_REGISTRY.setdefault(functional, {})
    if tv_tensor_cls in registry:
        raise ValueError(
            f"Functional {functional.__name__} already has a kernel registered for type "
            f"{tv_tensor_cls}."
        )

    def decorator(kernel: Callable) -> Callable:
        registry[tv_tensor_cls] = kernel
        return kernel

    return decorator


def run_custom(transform_leaf: Callable, inpt):
    """A transform's ``_transform`` on a user's ``TVTensor``: the registered kernels' output,
    or ``inpt`` unchanged where the transform's functionals have none."""
    saved = dict(_passthrough)
    _passthrough.update(on=True, used=False)
    try:
        out = transform_leaf(inpt)
        return out if _passthrough["used"] else inpt
    except _NoKernel:
        return inpt
    finally:
        _passthrough.update(saved)
