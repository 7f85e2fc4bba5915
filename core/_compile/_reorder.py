"""Graph rewrite: ``max_pool(relu(x))`` -> ``relu(max_pool(x))``, the ReLU on the pooled size.

Why: ReLU is monotonic, so it commutes with a max: ``max(relu(a), relu(b)) = relu(max(a, b))``
exactly, padding included (max pooling pads with -inf, and the max of ReLU outputs is >= 0).
After a 2x2 pool the ReLU's forward and backward touch a quarter of the elements (on the §7
CNN: 2.4M -> 0.6M per step, about 4% of the step).

Gradients are the same bit for bit: where a window's max is positive, ``x`` and ``relu(x)``
hold it at the same positions, so the pool routes the gradient to the same element and the
ReLU passes it; where it is <= 0, both orders give 0.
"""

from __future__ import annotations

import inspect
from typing import Any

from ember.fx.graph import Graph
from ember.fx.node import Node

__all__ = ["relu_after_max_pool"]


def _tables() -> tuple[set, set]:
    import ember
    import ember.nn.functional as F

    relus = {F.relu, ember.relu}
    pools = {F.max_pool1d, F.max_pool2d, F.max_pool3d}
    return relus, pools


def _is_plain_relu(n: Node, relus: set) -> bool:
    if n.op == "call_function" and n.target in relus:
        return (
            len(n.args) == 1
            and n.kwargs.get("inplace", False) is False
            and set(n.kwargs) <= {"inplace"}
        )
    return n.op == "call_method" and n.target == "relu" and len(n.args) == 1 and not n.kwargs


def _returns_indices(n: Node) -> bool:
    try:
        bound = inspect.signature(n.target).bind(*n.args, **n.kwargs)
    except TypeError:
        return True  # not a call we understand: leave it alone
    return bound.arguments.get("return_indices", False) is not False


def relu_after_max_pool(graph: Graph, root: Any = None) -> int:
    """Move every single-use ReLU feeding a max pool after the pool; returns how many."""
    import ember.nn.functional as F

    relus, pools = _tables()
    count = 0
    for pool in list(graph.nodes):
        if pool.op != "call_function" or pool.target not in pools or not pool.args:
            continue
        relu = pool.args[0]
        if (
            not isinstance(relu, Node)
            or len(relu.users) != 1
            or not _is_plain_relu(relu, relus)
            or _returns_indices(pool)
        ):
            continue
        src = relu.args[0]
        users = list(pool.users)
        pool.update_arg(0, src)
        with graph.inserting_after(pool):
            moved = graph.call_function(F.relu, (pool,))
        for u in users:
            u.replace_input_with(pool, moved)
        graph.erase_node(relu)
        count += 1
    return count
