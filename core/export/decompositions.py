"""``run_decompositions``: rewrite a program's graph into smaller ops.

ember has no lower op set than its public functions, so the default decomposition only
normalizes Tensor-method calls (``x.relu()``) into calls of ember's function of the same name
(``ember.relu(x)``). A ``decomp_table`` ``{op: fn}`` replaces every call of ``op`` by the ops
``fn`` runs (``fn`` is traced with ember.fx, calling ember's functions).
"""

from __future__ import annotations

from collections.abc import Callable

from ember.fx import GraphModule, Tracer

__all__ = ["decompose", "default_decompositions"]

# methods whose ember function of the same name takes different arguments
_KEEP_METHODS = frozenset(
    {
        "size",
        "view",
        "type",
        "to",
        "dim",
        "numel",
        "item",
        "tolist",
        "expand",
        "repeat",
        "permute",
        "reshape",
        "contiguous",
        "float",
        "double",
        "half",
        "int",
        "long",
        "bool",
        "new_zeros",
        "new_ones",
        "new_full",
        "new_empty",
        "new_tensor",
        "masked_fill_",
    }
)


def default_decompositions() -> dict[Callable, Callable]:
    """The default table: empty (ember's functions are already its lowest op level)."""
    return {}


def decompose(gm: GraphModule, table: dict[Callable, Callable]) -> GraphModule:
    import ember
    from ember.fx._names import namespace_functions

    funcs = namespace_functions("ember")
    graph = gm.graph.__class__()
    env: dict = {}
    for n in gm.graph.nodes:
        new = graph.node_copy(n, lambda x: env[x])
        if (
            n.op == "call_method"
            and n.target not in _KEEP_METHODS
            and not n.target.endswith("_")
            and n.target in funcs
            and getattr(ember.Tensor, n.target, None) is not None
        ):
            new.op, new.target = "call_function", funcs[n.target]
        env[n] = new
    out = GraphModule(gm, graph, type(gm).__name__)
    if not table:
        return out
    for n in out.graph.nodes:
        if n.op == "call_function" and n.target in table:
            n.target = table[n.target]
    out.recompile()
    leaves = tuple(
        {
            n.target
            for n in out.graph.nodes
            if n.op == "call_function" and n.target not in table.values()
        }
    )
    tracer = Tracer(autowrap_functions=leaves)
    return GraphModule(out, tracer.trace(out), type(gm).__name__)
