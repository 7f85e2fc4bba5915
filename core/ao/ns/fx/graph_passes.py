"""Graph rewrites of the FX numeric suite: loggers after (and before) the matched layers of
one model, and model b carrying a float copy of model a's layers ("shadows") fed with b's
own inputs, dequantized."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from ....fx import GraphModule, Node
from .graph_matcher import Subgraph, _skip_observers
from .ns_types import NSSingleResultValuesType
from .weight_utils import attr_value, get_fqn, get_target_type_str, stored_attr

__all__ = ["add_loggers_to_model", "create_a_shadows_b", "to_float"]


def to_float(x: Any) -> Any:
    """``x`` dequantized if it is a quantized tensor (a shadow's inputs), else ``x``."""
    if isinstance(x, (tuple, list)):
        return type(x)(to_float(v) for v in x)
    return x.dequantize() if getattr(x, "is_quantized", False) else x


def _insert_module(gm: GraphModule, name: str, mod: Any, args: tuple) -> Node:
    gm.add_submodule(name, mod)
    return gm.graph.create_node("call_module", name, args, {}, name=name)


def _unique(gm: GraphModule, base: str) -> str:
    taken = {n.name for n in gm.graph.nodes} | dict(gm.named_modules()).keys()
    k = 0
    while f"{base}_{k}" in taken:
        k += 1
    return f"{base}_{k}"


def _input_nodes(gm: GraphModule, node: Node) -> list[tuple[int, int, Node]]:
    """``(index_of_arg, index_within_arg, input)`` of the tensor inputs of ``node``: nodes
    among its positional arguments (and in lists of them), not stored constants."""
    out = []
    for i, a in enumerate(node.args):
        items = list(enumerate(a)) if isinstance(a, (list, tuple)) else [(0, a)]
        for j, v in items:
            if isinstance(v, Node) and stored_attr(gm, v) is None:
                out.append((i, j, v))
    return out


def _logger(
    logger_cls: Callable,
    gm: GraphModule,
    sub: Subgraph,
    logged: Node,
    model_name: str,
    ref_name: str,
    index: tuple[int, int] | None = None,
):
    """A ``logger_cls`` for ``logged``: an output logger, or with ``index`` (index of the
    argument, index within it) an input logger."""
    kind = (
        NSSingleResultValuesType.NODE_OUTPUT
        if index is None
        else NSSingleResultValuesType.NODE_INPUT
    )
    i, j = index or (0, 0)
    return logger_cls(
        ref_node_name=sub.base_op_node.name,
        prev_node_name=logged.name,
        model_name=model_name,
        ref_name=ref_name,
        prev_node_target_type=get_target_type_str(gm, logged),
        ref_node_target_type=get_target_type_str(gm, sub.base_op_node),
        results_type=kind.value,
        index_within_arg=j,
        index_of_arg=i,
        fqn=get_fqn(gm, sub.base_op_node),
        qconfig_str="",
    )


def add_loggers_to_model(
    gm: GraphModule,
    subgraphs: dict[str, Subgraph],
    model_name: str,
    logger_cls: Callable,
    should_log_inputs: bool,
) -> GraphModule:
    """A copy of ``gm`` with a ``logger_cls`` after each subgraph (``{layer name: subgraph}``,
    whose nodes belong to ``gm``) and, with ``should_log_inputs``, before each input."""
    out = copy.deepcopy(gm)
    by_name = {n.name: n for n in out.graph.nodes}
    graph = out.graph
    for ref_name, sub in subgraphs.items():
        sub = Subgraph(by_name[sub.start_node.name], by_name[sub.end_node.name])
        if should_log_inputs:
            for i, j, arg in _input_nodes(out, sub.start_node):
                logger = _logger(logger_cls, out, sub, arg, model_name, ref_name, (i, j))
                with graph.inserting_before(sub.start_node):
                    node = _insert_module(
                        out, _unique(out, f"{sub.start_node.name}_ns_logger_input"), logger, (arg,)
                    )
                sub.start_node.replace_input_with(arg, node)
        logged = _skip_observers(out, sub.end_node)
        logger = _logger(logger_cls, out, sub, logged, model_name, ref_name)
        with graph.inserting_after(logged):
            node = _insert_module(out, _unique(out, f"{logged.name}_ns_logger"), logger, (logged,))
        logged.replace_all_uses_with(node, delete_user_cb=lambda u, n=node: u is not n)
    out.recompile()
    return out


def _chain(sub: Subgraph, gm: GraphModule) -> list[Node]:
    """The op nodes of a subgraph in order (observers between them skipped)."""
    nodes, node = [sub.start_node], sub.start_node
    while node is not sub.end_node:
        node = _skip_observers(gm, node)
        node = next(iter(node.users))
        nodes.append(node)
    return nodes


def _copy_subgraph_into(
    gm_b: GraphModule, gm_a: GraphModule, sub_a: Subgraph, inputs: list[Node], prefix: str
) -> Node | None:
    """Append float copies of ``sub_a``'s nodes to ``gm_b`` at its insertion point, fed with
    ``inputs``; None when ``sub_a`` takes a different number of tensor inputs."""
    chain = _chain(sub_a, gm_a)
    first_inputs = _input_nodes(gm_a, chain[0])
    if len(first_inputs) != len(inputs):
        return None
    env: dict[Node, Node] = {a: b for (_, _, a), b in zip(first_inputs, inputs)}
    last: Node | None = None

    def mapped(a: Any, k: int) -> Any:
        if isinstance(a, (list, tuple)):
            return type(a)(mapped(v, k) for v in a)
        if not isinstance(a, Node):
            return a
        root = None if a in env else stored_attr(gm_a, a)
        if root is not None:
            # a stored weight of a functional op: copied over (without its weight observer)
            name = _unique(gm_b, f"{prefix}_shadow_copy_{k}_attr")
            setattr(gm_b, name, copy.deepcopy(attr_value(gm_a, root)))
            env[a] = gm_b.graph.create_node("get_attr", name, (), {}, name=name)
        if a in env:
            return env[a]
        if last is None:
            raise KeyError(
                f"shadow copy: input '{a.name}' of '{sub_a.start_node.name}' is unmapped"
            )
        return last  # the previous op of the chain, through its observers

    for k, node in enumerate(chain):
        args = mapped(node.args, k)
        kwargs = {key: mapped(v, k) for key, v in node.kwargs.items()}
        name = _unique(gm_b, f"{prefix}_shadow_copy")
        if node.op == "call_module":
            gm_b.add_submodule(name, copy.deepcopy(gm_a.get_submodule(node.target)))
        last = gm_b.graph.create_node(
            node.op, node.target if node.op != "call_module" else name, args, kwargs, name=name
        )
        env[node] = last
    return last


def create_a_shadows_b(
    name_a: str,
    gm_a: GraphModule,
    name_b: str,
    gm_b: GraphModule,
    pairs: dict[str, tuple[Subgraph, Subgraph]],
    logger_cls: Callable,
    should_log_inputs: bool,
) -> GraphModule:
    """A copy of ``gm_b`` in which each of ``gm_a``'s matched layers also runs, in float,
    on the same (dequantized) inputs as its counterpart in b; loggers record both outputs."""
    out = copy.deepcopy(gm_b)
    by_name = {n.name: n for n in out.graph.nodes}
    graph = out.graph
    for ref_name, (sub_a, sub_b) in pairs.items():
        sub_b = Subgraph(by_name[sub_b.start_node.name], by_name[sub_b.end_node.name])
        logged_b = _skip_observers(out, sub_b.end_node)
        inputs_b = [v for _, _, v in _input_nodes(out, sub_b.start_node)]
        with graph.inserting_after(logged_b):
            casts = [
                graph.create_node(
                    "call_function",
                    to_float,
                    (v,),
                    {},
                    name=_unique(out, f"{sub_b.start_node.name}_dtype_cast"),
                )
                for v in inputs_b
            ]
            shadow = _copy_subgraph_into(out, gm_a, sub_a, casts, sub_b.start_node.name)
            if shadow is None:
                for c in reversed(casts):
                    graph.erase_node(c)
                print(
                    f"skipping shadow loggers for node_b: {sub_b.start_node.name}, start_node_a: "
                    f"{sub_a.start_node.name}: they take a different number of tensor inputs"
                )
                continue
            logger_a = _logger(logger_cls, gm_a, sub_a, sub_a.end_node, name_a, ref_name)
            _insert_module(out, _unique(out, f"{shadow.name}_ns_logger_a"), logger_a, (shadow,))
        logger_b = _logger(logger_cls, out, sub_b, logged_b, name_b, ref_name)
        with graph.inserting_after(logged_b):
            node = _insert_module(
                out, _unique(out, f"{logged_b.name}_ns_logger_b"), logger_b, (logged_b,)
            )
        logged_b.replace_all_uses_with(
            node, delete_user_cb=lambda u, n=node: u is not n and u.target is not to_float
        )
    out.recompile()
    return out
