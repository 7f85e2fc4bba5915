"""``ember._inductor.decomposition`` (torch._inductor.decomposition): the table of operator
decompositions a compiler applies. ember's compiler runs each op's own implementation, so the
table is only recorded (libraries such as torchao register their custom ops' decompositions in
it at import) and handed back by :func:`select_decomp_table`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["decompositions", "register_decomposition", "select_decomp_table"]

#: op -> the function that decomposes it
decompositions: dict[Any, Callable[..., Any]] = {}


def register_decomposition(ops: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A decorator recording its function as the decomposition of each op of ``ops`` (one op or
    an iterable of them); returns the function unchanged."""
    op_list = list(ops) if isinstance(ops, Iterable) and not isinstance(ops, str) else [ops]

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        for op in op_list:
            if op in decompositions:
                raise RuntimeError(f"duplicate decomposition registration for {op}")
            decompositions[op] = fn
        return fn

    return decorator


def select_decomp_table() -> dict[Any, Callable[..., Any]]:
    """The decompositions registered so far."""
    return decompositions
