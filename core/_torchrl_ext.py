"""torchrl's compiled extension, ``torchrl._torchrl``, for torchrl running on ember.

torchrl's wheel ships one C++ module, linked against libtorch (``libc10.so``, ``libtorch.so``),
whose CPU part is four segment trees: ``SumSegmentTreeFp32/Fp64`` and ``MinSegmentTreeFp32/Fp64``,
the priority index of ``PrioritizedSampler`` / ``PrioritizedReplayBuffer``. Under ember there
is no libtorch, so that module cannot load and torchrl's prioritized buffers stop with
"SumSegmentTreeFp32 is not available". When ``torch`` is ember (``sys.modules["torch"]`` is
this package), a ``sys.meta_path`` finder answers ``torchrl._torchrl`` with this module's
NumPy trees instead, and warns once that it did. The CUDA trees (``CudaSumSegmentTree*``) are
not provided: torchrl imports them apart and falls back when they are missing. With real torch
the finder steps aside. ``import ember`` does not import torchrl; the finder costs one string
comparison per import.

The trees keep torchrl's layout and arithmetic: ``2 * capacity`` values in the tree's dtype
(capacity the least power of two above ``size``), leaves at ``capacity + i``, each parent the
sum (or min) of its two children, so sums, queries and ``scan_lower_bound`` (the first index
whose prefix sum is not below the value) round as the C++ ones do.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
import warnings
from typing import Any

import numpy as np

__all__ = ["SumSegmentTreeFp32", "SumSegmentTreeFp64", "MinSegmentTreeFp32", "MinSegmentTreeFp64"]

_NAME = "torchrl._torchrl"
_WARNING = (
    "torchrl's C++ extension (torchrl._torchrl) is linked against libtorch and cannot load "
    "under ember; ember provides its CPU segment trees (prioritized replay buffers) in "
    "Python instead. CUDA segment trees are not available."
)


def _as_index(index: Any) -> np.ndarray:
    from .tensor import Tensor

    a = index._data if isinstance(index, Tensor) else index
    if hasattr(a, "get"):  # a CUDA array: the trees live on the host
        a = a.get()
    return np.asarray(a, dtype=np.int64)


class _SegmentTree:
    _np_dtype: Any = np.float32
    _identity: float = 0.0

    def __init__(self, size: int) -> None:
        size = int(size)
        capacity = 1
        while capacity <= size:
            capacity <<= 1
        self._size, self._capacity = size, capacity
        self._values = np.full(2 * capacity, self._identity, dtype=self._np_dtype)

    def _op(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @property
    def size(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def identity_element(self) -> float:
        return float(self._identity)

    def __len__(self) -> int:
        return self._size

    def _wrap_like(self, out: np.ndarray, like: Any) -> Any:
        from .tensor import Tensor

        if isinstance(like, Tensor):
            return Tensor._wrap(out)
        return out if isinstance(like, np.ndarray) else out.tolist()

    def at(self, index: Any) -> Any:
        """The leaf value(s) at ``index`` (an int gives a float; a tensor, a tensor)."""
        if isinstance(index, (int, np.integer)):
            return float(self._values[int(index) | self._capacity])
        out = self._values[_as_index(index) | self._capacity]
        return self._wrap_like(out, index)

    __getitem__ = at

    def update(self, index: Any, value: Any) -> None:
        """Set leaf ``index`` (one or many) to ``value`` (a scalar, or one per index), then
        recompute the ancestors from their children."""
        from .tensor import Tensor

        idx = _as_index(index).reshape(-1)
        v = value._data if isinstance(value, Tensor) else value
        if hasattr(v, "get"):
            v = v.get()
        v = np.asarray(v, dtype=self._np_dtype).reshape(-1)
        if v.size not in (1, idx.size):
            raise ValueError(
                f"update: {v.size} values for {idx.size} indices (expected 1 or {idx.size})"
            )
        if idx.size == 0:
            return
        nodes = idx | self._capacity
        self._values[nodes] = v if v.size == idx.size else v[0]  # the last of duplicates wins
        nodes = np.unique(nodes >> 1)
        while nodes.size:  # one level at a time, up to the root (node 1)
            self._values[nodes] = self._op(self._values[2 * nodes], self._values[2 * nodes + 1])
            nodes = np.unique(nodes[nodes > 1] >> 1)

    __setitem__ = update

    def _query_one(self, left: int, right: int) -> float:
        if left <= 0 and right >= self._size:
            return self._values[1]
        ret = self._values.dtype.type(self._identity)
        left |= self._capacity
        right |= self._capacity
        while left < right:
            if left & 1:
                ret = self._op(ret, self._values[left])
                left += 1
            if right & 1:
                right -= 1
                ret = self._op(ret, self._values[right])
            left >>= 1
            right >>= 1
        return ret

    def query(self, left: Any, right: Any) -> Any:
        """The sum (min) over ``[left, right)``; elementwise for arrays or tensors of bounds."""
        if isinstance(left, (int, np.integer)) and isinstance(right, (int, np.integer)):
            return float(self._query_one(int(left), int(right)))
        lo, hi = _as_index(left), _as_index(right)
        out = np.array(
            [self._query_one(int(a), int(b)) for a, b in zip(lo.reshape(-1), hi.reshape(-1))],
            dtype=self._np_dtype,
        ).reshape(lo.shape)
        return self._wrap_like(out, left)

    def __reduce__(self):
        return (_load_tree, (type(self).__name__, self._values[self._capacity :][: self._size]))


class _SumSegmentTree(_SegmentTree):
    _identity = 0.0

    def _op(self, a, b):
        return a + b

    def scan_lower_bound(self, value: Any) -> Any:
        """The first index whose prefix sum is not less than ``value`` (``size`` when ``value``
        exceeds the total); elementwise for an array or tensor of values."""
        from .tensor import Tensor

        scalar = isinstance(value, (int, float, np.floating, np.integer))
        v = value._data if isinstance(value, Tensor) else value
        if hasattr(v, "get"):
            v = v.get()
        cur = np.array(v, dtype=self._np_dtype).reshape(-1)
        over = cur > self._values[1]
        index = np.ones(cur.shape, dtype=np.int64)
        while index.size and index[0] < self._capacity:  # every walk has the same depth
            index <<= 1
            left = self._values[index]
            right = cur > left
            cur = np.where(right, cur - left, cur)
            index |= right
        index ^= self._capacity
        index[over] = self._size
        if scalar:
            return int(index[0])
        return self._wrap_like(index.reshape(np.shape(v)), value)


class _MinSegmentTree(_SegmentTree):
    def _op(self, a, b):
        return np.minimum(a, b)


class SumSegmentTreeFp32(_SumSegmentTree):
    """torchrl's ``SumSegmentTreeFp32``: prefix sums of float32 priorities."""

    _np_dtype = np.float32


class SumSegmentTreeFp64(_SumSegmentTree):
    """torchrl's ``SumSegmentTreeFp64``: prefix sums of float64 priorities."""

    _np_dtype = np.float64


class MinSegmentTreeFp32(_MinSegmentTree):
    """torchrl's ``MinSegmentTreeFp32``: interval minima of float32 priorities."""

    _np_dtype = np.float32
    _identity = float(np.finfo(np.float32).max)


class MinSegmentTreeFp64(_MinSegmentTree):
    """torchrl's ``MinSegmentTreeFp64``: interval minima of float64 priorities."""

    _np_dtype = np.float64
    _identity = float(np.finfo(np.float64).max)


_TREES = {
    c.__name__: c
    for c in (SumSegmentTreeFp32, SumSegmentTreeFp64, MinSegmentTreeFp32, MinSegmentTreeFp64)
}


def _load_tree(name: str, leaves: np.ndarray) -> _SegmentTree:
    tree = _TREES[name](len(leaves))
    tree.update(np.arange(len(leaves)), leaves)
    return tree


class _Loader:
    def create_module(self, spec):
        module = types.ModuleType(_NAME)
        module.__doc__ = "torchrl's segment trees, served by ember (core/_torchrl_ext.py)."
        for name, cls in _TREES.items():
            setattr(module, name, cls)
        return module

    def exec_module(self, module) -> None:
        warnings.warn(_WARNING, UserWarning, stacklevel=2)


class _TorchrlExtFinder:
    """A ``sys.meta_path`` finder that only answers ``torchrl._torchrl``, and only when
    ``torch`` is ember."""

    @classmethod
    def find_spec(cls, fullname: str, path=None, target=None):
        if fullname != _NAME or sys.modules.get("torch") is not sys.modules.get(__package__):
            return None
        return importlib.machinery.ModuleSpec(_NAME, _Loader())


def install() -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if _TorchrlExtFinder not in sys.meta_path:
        sys.meta_path.insert(0, _TorchrlExtFinder)
