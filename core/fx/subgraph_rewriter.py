"""``replace_pattern``: find every occurrence of a traced pattern and splice in a replacement."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .graph_module import GraphModule
from .node import Node

__all__ = ["Match", "replace_pattern"]


class Match(NamedTuple):
    anchor: Node  # the graph node matching the pattern's returned value
    nodes_map: dict  # pattern node -> graph node


def _as_graph_module(fn_or_gm: Callable | GraphModule) -> GraphModule:
    if isinstance(fn_or_gm, GraphModule):
        return fn_or_gm
    from .tracer import symbolic_trace

    return symbolic_trace(fn_or_gm)


def _single_output(gm: GraphModule, what: str) -> Node:
    out = [n for n in gm.graph.nodes if n.op == "output"][0]
    ret = out.args[0]
    if not isinstance(ret, Node):
        raise NotImplementedError(f"replace_pattern: the {what} must return exactly one value "
                                  f"(got {type(ret).__name__})")
    return ret


class _Matcher:
    def __init__(self, pattern_anchor: Node) -> None:
        self.anchor = pattern_anchor

    def match(self, gn: Node) -> dict | None:
        nodes_map: dict[Node, Node] = {}
        return nodes_map if self._node(self.anchor, gn, nodes_map) else None

    def _node(self, pn: Node, gn: Node, m: dict) -> bool:
        if pn in m:
            return m[pn] is gn
        if pn.op == "placeholder":
            m[pn] = gn
            return True
        if pn.op != gn.op or not _same_target(pn, gn):
            return False
        if len(pn.args) != len(gn.args) or set(pn.kwargs) != set(gn.kwargs):
            return False
        m[pn] = gn
        return self._arg(pn.args, gn.args, m) and \
            all(self._arg(pn.kwargs[k], gn.kwargs[k], m) for k in pn.kwargs)

    def _arg(self, pa: Any, ga: Any, m: dict) -> bool:
        if isinstance(pa, Node):
            return isinstance(ga, Node) and self._node(pa, ga, m)
        if isinstance(pa, (tuple, list)):
            return type(ga) is type(pa) and len(ga) == len(pa) and \
                all(self._arg(p, g, m) for p, g in zip(pa, ga))
        if isinstance(pa, dict):
            return isinstance(ga, dict) and set(pa) == set(ga) and \
                all(self._arg(pa[k], ga[k], m) for k in pa)
        return not isinstance(ga, Node) and type(pa) is type(ga) and pa == ga


def _same_target(pn: Node, gn: Node) -> bool:
    if pn.op == "call_function":
        return pn.target is gn.target
    return pn.target == gn.target


def replace_pattern(gm: GraphModule, pattern: Callable | GraphModule,
                    replacement: Callable | GraphModule) -> list[Match]:
    """Replace each non-overlapping match of ``pattern`` in ``gm.graph`` with ``replacement``.

    ``pattern`` and ``replacement`` are functions (traced here) or GraphModules taking the
    same inputs; the pattern must return one value. Matched intermediate values may not be
    used outside the match. Returns the matches; ``gm`` is recompiled.
    """
    if not isinstance(gm, GraphModule):
        raise TypeError(f"replace_pattern: expected a GraphModule, got {type(gm).__name__}")
    p_gm, r_gm = _as_graph_module(pattern), _as_graph_module(replacement)
    p_anchor = _single_output(p_gm, "pattern")
    p_inputs = [n for n in p_gm.graph.nodes if n.op == "placeholder"]
    r_inputs = [n for n in r_gm.graph.nodes if n.op == "placeholder"]
    if len(p_inputs) != len(r_inputs):
        raise ValueError(f"replace_pattern: the pattern takes {len(p_inputs)} inputs but the "
                         f"replacement takes {len(r_inputs)}")
    matcher = _Matcher(p_anchor)
    graph = gm.graph
    taken: set[Node] = set()
    matches: list[Match] = []
    for gn in graph.nodes:
        if gn in taken:
            continue
        m = matcher.match(gn)
        if m is None:
            continue
        inner = {g for p, g in m.items() if p.op != "placeholder"}
        if inner & taken:
            continue
        # an intermediate value read outside the match would lose its producer
        if any(u not in inner for g in inner if g is not gn for u in g.users):
            continue
        taken |= inner
        matches.append(Match(gn, m))

    replaced: dict[Node, Node] = {}
    for match in matches:
        val_map = {}
        for p_in, r_in in zip(p_inputs, r_inputs):
            g = match.nodes_map[p_in]
            while g in replaced:
                g = replaced[g]
            val_map[r_in] = g
        with graph.inserting_before(match.anchor):
            new_out = graph.graph_copy(r_gm.graph, val_map)
        for n in r_gm.graph.nodes:
            if n.op in ("get_attr", "call_module") and not _has_path(gm, n.target):
                from .graph_module import _copy_attr

                _copy_attr(r_gm, gm, n.target)
        if isinstance(new_out, Node):
            match.anchor.replace_all_uses_with(new_out)
            replaced[match.anchor] = new_out
        else:
            raise NotImplementedError("replace_pattern: the replacement must return one value")
        inner = [g for p, g in match.nodes_map.items() if p.op != "placeholder"]
        order = {n: i for i, n in enumerate(graph.nodes)}
        for g in sorted(inner, key=order.__getitem__, reverse=True):
            graph.erase_node(g)
    gm.recompile()
    return matches


def _has_path(mod, target: str) -> bool:
    obj = mod
    for atom in target.split("."):
        if not hasattr(obj, atom):
            return False
        obj = getattr(obj, atom)
    return True
