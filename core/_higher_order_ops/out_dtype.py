"""``ember._higher_order_ops.out_dtype`` (torch._higher_order_ops.out_dtype): run an operator
with its result in another dtype (torchao's int8 matmul asks an ``int32`` result of ``mm``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["out_dtype"]


def out_dtype(op: Callable[..., Any], output_dtype: Any, *args: Any) -> Any:
    """``op(*args)`` computed in the promotion of its tensor arguments' dtypes with
    ``output_dtype`` and returned as ``output_dtype`` (torch's eager fallback): ``mm`` of two
    ``int8`` matrices with ``output_dtype=int32`` accumulates in ``int32`` without overflow."""
    import ember

    if not isinstance(output_dtype, ember.dtype):
        raise TypeError(f"out_dtype: output_dtype must be a dtype, got {type(output_dtype)}")
    promoted = output_dtype
    for a in args:
        if isinstance(a, ember.Tensor):
            promoted = ember.promote_types(promoted, a.dtype)
    cast = [a.to(promoted) if isinstance(a, ember.Tensor) else a for a in args]
    return op(*cast).to(output_dtype)
