"""What a leaf's gradient edge points at (PyTorch's ``AccumulateGrad``), and the handle a hook
registration returns."""

from __future__ import annotations

import weakref as _weakref

# One AccumulateGrad node per live leaf (by id), as PyTorch keeps one: graph walkers such as
# torchviz's make_dot de-duplicate nodes by identity.
_ACC_NODES: dict = {}


class _Acc:
    """What ``next_functions`` shows for a leaf: PyTorch's AccumulateGrad."""

    __slots__ = ("_ref", "metadata", "__weakref__")

    # a leaf's node ends the graph: graph walkers recurse into next_functions
    next_functions: tuple = ()

    def __new__(cls, variable):
        key = id(variable)
        node = _ACC_NODES.get(key)
        if node is not None and node._ref() is variable:
            return node
        node = object.__new__(cls)
        node._ref = _weakref.ref(variable, lambda _r, k=key: _ACC_NODES.pop(k, None))
        node.metadata = {}
        _ACC_NODES[key] = node
        return node

    @property
    def variable(self):
        return self._ref()

    def name(self) -> str:
        return "AccumulateGrad"

    def __repr__(self) -> str:
        return f"<AccumulateGrad object at {id(self):#x}>"


class _RemovableHandle:
    __slots__ = ("_list", "_item")

    def __init__(self, lst, item):
        self._list, self._item = lst, item

    def remove(self) -> None:
        try:
            self._list.remove(self._item)
        except ValueError:
            pass
