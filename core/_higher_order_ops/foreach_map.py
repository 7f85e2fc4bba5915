"""``foreach_map`` (torch._higher_order_ops.foreach_map): one op over lists of tensors.

torch fuses the calls horizontally under ``torch.compile``; ember runs them as a loop of its
ops (eagerly, or unrolled by a capture), so results and gradients are the per-item op's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["foreach_map"]


def foreach_map(op: Callable, *operands: Any, **kwargs: Any) -> list:
    """``[op(*items_i, **kwargs) for i]``: list (or tuple) operands give their ``i``-th item,
    the others (scalars, a shared tensor) are passed as they are."""
    lists = [o for o in operands if isinstance(o, (list, tuple))]
    if not lists:
        raise ValueError("foreach_map: expected at least one list of tensors among the operands")
    n = len(lists[0])
    if any(len(o) != n for o in lists):
        raise ValueError(
            f"foreach_map: the lists have different lengths ({sorted({len(o) for o in lists})})"
        )
    return [
        op(*(o[i] if isinstance(o, (list, tuple)) else o for o in operands), **kwargs)
        for i in range(n)
    ]
