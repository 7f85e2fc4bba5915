"""``torch.nn.modules.utils``: the argument helpers layers and third-party code import
(``_pair(3) == (3, 3)``) and ``consume_prefix_in_state_dict_if_present``."""

from __future__ import annotations

import collections.abc
from collections.abc import Callable
from itertools import repeat
from typing import Any

__all__ = ["consume_prefix_in_state_dict_if_present"]


def _ntuple(n: int, name: str = "parse") -> Callable[[Any], tuple]:
    def parse(x):
        if isinstance(x, collections.abc.Iterable):
            return tuple(x)
        return tuple(repeat(x, n))

    parse.__name__ = name
    return parse


_single = _ntuple(1, "_single")
_pair = _ntuple(2, "_pair")
_triple = _ntuple(3, "_triple")
_quadruple = _ntuple(4, "_quadruple")


def _reverse_repeat_tuple(t, n: int) -> tuple:
    """Reverse ``t`` and repeat each element ``n`` times (conv padding for ``F.pad``)."""
    return tuple(x for x in reversed(t) for _ in range(n))


def _list_with_default(out_size, defaults: list[int]) -> list[int]:
    """``out_size`` with each ``None`` filled from the last dims of ``defaults``."""
    if isinstance(out_size, int):
        return [out_size]
    if len(defaults) <= len(out_size):
        raise ValueError(f"Input dimension should be at least {len(out_size) + 1}")
    return [v if v is not None else d for v, d in zip(out_size, defaults[-len(out_size) :])]


def consume_prefix_in_state_dict_if_present(state_dict: dict, prefix: str) -> None:
    """Strip ``prefix`` from the keys (and the metadata) of ``state_dict`` in place: a
    DataParallel/DDP checkpoint (``module.``) into a plain model."""
    for key in sorted(state_dict.keys()):
        if key.startswith(prefix):
            state_dict[key[len(prefix) :]] = state_dict.pop(key)
    metadata = getattr(state_dict, "_metadata", None)
    if metadata is not None:
        for key in list(metadata.keys()):
            if len(key) == 0:
                continue
            if key == prefix.replace(".", "") or key.startswith(prefix):
                metadata[key[len(prefix) :]] = metadata.pop(key)


class _functional:  # noqa: N801 - used like ``staticmethod``
    """A class attribute that reads ``ember.nn.functional.<name>`` at each access.

    torch's layers call ``F.relu`` / ``F.avg_pool2d`` through the module at call time, so a
    library that patches ``torch.nn.functional.relu`` (ptflops' functional counters) sees the
    layers' calls as well; binding the function once at class creation would hide them.
    """

    __slots__ = ("name",)
    _namespace: Any = None  # ember.nn.functional, bound on first use (an import costs ~5 us)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> Callable:
        ns = _functional._namespace
        if ns is None:
            from .. import functional as ns

            _functional._namespace = ns
        return getattr(ns, self.name)
