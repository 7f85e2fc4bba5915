"""``ember._higher_order_ops.map`` (torch._higher_order_ops.map.map)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._common import leaves_along, stack_outputs

__all__ = ["map"]


def map(f: Callable, xs: Any, *args: Any) -> Any:  # noqa: A001 -- torch's name
    """Apply ``f(x, *args)`` to each slice ``x`` of ``xs`` along dim 0; stack the results.

    Args:
        f: returns a tensor or a pytree of tensors of the same structure for every slice.
        xs: a tensor or a pytree of tensors sharing their first size (``f`` gets the slices
            in the same structure).
        args: passed to every call unchanged.
    """
    from ember.utils._pytree import tree_unflatten

    if not callable(f):
        raise RuntimeError(f"map: expected f to be callable, got {type(f).__name__}")
    leaves, spec, _, n = leaves_along("map", "xs", xs, 0)
    if n == 0:
        raise RuntimeError("map: xs has size 0 along dim 0; there is nothing to map over")
    outs = [f(tree_unflatten([leaf[i] for leaf in leaves], spec), *args) for i in range(n)]
    return stack_outputs("map", outs, 0)
