"""``ember._higher_order_ops.scan`` (torch._higher_order_ops.scan.scan)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ._common import leaves_along, stack_outputs

__all__ = ["scan"]


def scan(
    combine_fn: Callable,
    init: Any,
    xs: Any,
    *,
    dim: int = 0,
    reverse: bool = False,
    additional_inputs: Sequence | None = None,
) -> tuple[Any, Any]:
    """A loop carrying state: ``carry, y = combine_fn(carry, x)`` for each slice ``x`` of
    ``xs`` along ``dim``.

    Args:
        combine_fn: takes ``(carry, x, *additional_inputs)`` and returns ``(next_carry, y)``;
            ``next_carry`` has the structure, shapes and dtypes of ``init``.
        init: the first carry (a tensor or pytree of tensors).
        xs: a tensor or pytree of tensors sharing their size along ``dim``.
        dim: the dimension scanned over.
        reverse: scan from the last slice to the first (``ys`` keep the slices' positions).
        additional_inputs: extra arguments passed to every call.

    Returns:
        ``(final_carry, ys)``, the ``y`` of every step stacked along ``dim``.
    """
    from ember import Tensor
    from ember.fx import Proxy
    from ember.utils._pytree import tree_flatten, tree_unflatten

    if not callable(combine_fn):
        raise RuntimeError(
            f"scan: expected combine_fn to be callable, got {type(combine_fn).__name__}"
        )
    extra = tuple(additional_inputs or ())
    leaves, spec, dim, n = leaves_along("scan", "xs", xs, dim)
    init_leaves, init_spec = tree_flatten(init)
    if not all(isinstance(t, (Tensor, Proxy)) for t in init_leaves):
        raise RuntimeError("scan: expected init to hold only tensors")
    # traced by ember.compile, a tuple argument may be one Proxy: check the carry eagerly only
    eager = all(isinstance(t, Tensor) for t in init_leaves)
    if n == 0:
        raise RuntimeError("scan: xs has size 0 along the scanned dim")
    carry, outs = init, [None] * n
    for i in reversed(range(n)) if reverse else range(n):
        x = tree_unflatten([leaf.select(dim, i) for leaf in leaves], spec)
        res = combine_fn(carry, x, *extra)
        if not isinstance(res, (tuple, list)) or len(res) != 2:
            raise RuntimeError("scan: combine_fn must return a tuple (next_carry, y)")
        carry, outs[i] = res
        new_leaves, new_spec = tree_flatten(carry)
        if eager and (
            new_spec != init_spec
            or any(
                a.shape != b.shape or a.dtype != b.dtype for a, b in zip(new_leaves, init_leaves)
            )
        ):
            raise RuntimeError(
                "scan: combine_fn must return a carry of the same structure, shapes and "
                f"dtypes as init; got {[tuple(t.shape) for t in new_leaves]} for "
                f"{[tuple(t.shape) for t in init_leaves]}"
            )
    return carry, stack_outputs("scan", outs, dim)
