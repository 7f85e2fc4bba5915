"""``ShapeProp``: run the graph on example inputs and record each value's shape and dtype."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..interpreter import Interpreter
from ..node import Node, map_aggregate

__all__ = ["ShapeProp", "TensorMetadata"]


class TensorMetadata(NamedTuple):
    shape: tuple
    dtype: Any
    requires_grad: bool
    stride: tuple | None
    memory_format: Any
    is_quantized: bool
    qparams: dict


def _extract(t) -> TensorMetadata:
    from ember import contiguous_format

    return TensorMetadata(
        tuple(t.shape),
        t.dtype,
        bool(t.requires_grad),
        tuple(t.stride()),
        contiguous_format,
        False,
        {},
    )


class ShapeProp(Interpreter):
    """``ShapeProp(gm).propagate(*args)`` stores ``node.meta['tensor_meta']`` (a
    :class:`TensorMetadata`, or nested tuples/lists of them for multiple outputs) and
    ``node.meta['type']`` on every node."""

    def run_node(self, n: Node) -> Any:
        from ember import Tensor

        result = super().run_node(n)
        found = [False]

        def meta(x):
            if isinstance(x, Tensor):
                found[0] = True
                return _extract(x)
            return x

        tm = map_aggregate(result, meta)
        if found[0]:
            n.meta["tensor_meta"] = tm
        n.meta["type"] = type(result)
        return result

    def propagate(self, *args) -> Any:
        """Run the module on ``args``, annotating every node; returns the output."""
        return super().run(*args)
