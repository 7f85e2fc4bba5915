"""``ember.utils.weak``: dictionaries keyed weakly by object identity (PyTorch's
``torch.utils.weak``). Tensors compare elementwise, so a plain ``WeakKeyDictionary`` cannot
hold them as keys; these key by ``id`` and drop an entry when its key is collected."""

from __future__ import annotations

import weakref
from collections.abc import Iterator, MutableMapping
from typing import Any

__all__ = [
    "WeakIdRef",
    "WeakIdKeyDictionary",
    "WeakTensorKeyDictionary",
    "TensorWeakRef",
]


class WeakIdRef(weakref.ref):
    r"""A weak reference hashed and compared by the referent's identity (while it lives)."""

    __slots__ = ("_id",)

    def __init__(self, key: Any, callback=None) -> None:
        self._id = id(key)
        super().__init__(key, callback)

    def __call__(self) -> Any:
        return super().__call__()

    def __hash__(self) -> int:
        return self._id

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WeakIdRef):
            return NotImplemented
        a, b = self(), other()
        if a is not None and b is not None:
            return a is b
        return self is other


class _StrongIdRef:
    """A lookup key for a live object: equal to the ``WeakIdRef`` of the same object."""

    __slots__ = ("_obj", "_id")

    def __init__(self, obj: Any) -> None:
        self._obj, self._id = obj, id(obj)

    def __call__(self) -> Any:
        return self._obj

    def __hash__(self) -> int:
        return self._id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, (WeakIdRef, _StrongIdRef)) and other() is self._obj


class WeakIdKeyDictionary(MutableMapping):
    r"""A mapping whose keys are held weakly and compared with ``is``, not ``==``.

    Args:
        dict (Mapping, optional): initial items.
        ref_type (type): the weak reference class. Default: :class:`WeakIdRef`.
    """

    def __init__(self, dict=None, ref_type: type = WeakIdRef) -> None:
        self.data: dict = {}
        self.ref_type = ref_type
        self_ref = weakref.ref(self)

        def remove(k) -> None:
            me = self_ref()
            if me is not None:
                me.data.pop(k, None)

        self._remove = remove
        if dict is not None:
            self.update(dict)

    def __getitem__(self, key: Any) -> Any:
        return self.data[_StrongIdRef(key)]

    def __setitem__(self, key: Any, value: Any) -> None:
        self.data[self.ref_type(key, self._remove)] = value

    def __delitem__(self, key: Any) -> None:
        del self.data[_StrongIdRef(key)]

    def __contains__(self, key: object) -> bool:
        try:
            return _StrongIdRef(key) in self.data
        except TypeError:
            return False

    def __iter__(self) -> Iterator:
        for ref in list(self.data):
            obj = ref()
            if obj is not None:
                yield obj

    def __len__(self) -> int:
        return sum(1 for ref in list(self.data) if ref() is not None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} at {id(self):#x}>"

    def copy(self) -> WeakIdKeyDictionary:
        """A shallow copy, holding the same keys weakly."""
        new = type(self)(ref_type=self.ref_type)
        new.update(self.items())
        return new

    __copy__ = copy

    def keyrefs(self) -> list:
        """The weak references to the keys."""
        return list(self.data)


WeakTensorKeyDictionary = WeakIdKeyDictionary


class TensorWeakRef:
    r"""A weak reference to a tensor: call :meth:`__call__` for the tensor or ``None``."""

    __slots__ = ("ref",)

    def __init__(self, tensor: Any) -> None:
        from ..tensor import Tensor

        if not isinstance(tensor, Tensor):
            raise TypeError(f"TensorWeakRef expects an ember.Tensor, got {type(tensor).__name__}")
        self.ref = weakref.ref(tensor)

    def __call__(self) -> Any:
        return self.ref()
