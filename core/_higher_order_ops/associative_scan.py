"""``ember._higher_order_ops.associative_scan`` (torch's, in its "generic" mode)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._common import leaves_along, stack_outputs

__all__ = ["associative_scan"]


def associative_scan(
    combine_fn: Callable,
    xs: Any,
    dim: int,
    reverse: bool = False,
    combine_mode: str = "pointwise",
) -> Any:
    """The inclusive prefix "sum" of ``xs`` along ``dim`` under an associative ``combine_fn``
    (``out[i] = combine_fn(out[i - 1], xs[i])``; with ``reverse=True``
    ``out[i] = combine_fn(out[i + 1], xs[i])``, as torch's flip-scan-flip).

    Args:
        combine_fn: an associative function of two slices (pytrees like ``xs``).
        xs: a tensor or pytree of tensors sharing their size along ``dim``.
        dim: the dimension scanned over.
        reverse: scan from the last slice to the first.
        combine_mode: ``"pointwise"`` or ``"generic"``; both run the same loop here (torch's
            pointwise mode is a Triton kernel for CUDA inputs).
    """
    from ember.utils._pytree import tree_unflatten

    if combine_mode not in ("pointwise", "generic"):
        raise ValueError(
            f"associative_scan: combine_mode must be 'pointwise' or 'generic', got {combine_mode!r}"
        )
    if not callable(combine_fn):
        raise RuntimeError(
            f"associative_scan: expected combine_fn to be callable, got {type(combine_fn).__name__}"
        )
    leaves, spec, dim, n = leaves_along("associative_scan", "xs", xs, dim)
    if n == 0:
        return xs
    outs: list[Any] = [None] * n
    acc = None
    for i in reversed(range(n)) if reverse else range(n):
        x = tree_unflatten([leaf.select(dim, i) for leaf in leaves], spec)
        # reversed, torch flips xs and scans forward: the accumulator stays the left operand
        acc = x if acc is None else combine_fn(acc, x)
        outs[i] = acc
    return stack_outputs("associative_scan", outs, dim)
