"""``replace_pattern`` / ``replace_pattern_with_filters``: find every occurrence of a traced
pattern (one or several outputs) and splice in a replacement (torch.fx.subgraph_rewriter).

Matching follows torch.fx's SubgraphMatcher: the pattern's returned nodes that are used only
by its output are the *anchors*; every anchor is matched against every graph node of the same
op and target, walking the pattern's inputs upwards (pattern placeholders match any value,
literals must be equal unless ``ignore_literals``); a match whose inner values are read outside
it is dropped, then overlapping matches (first found wins). Each match's replacement is copied
in before the first user of the matched outputs, and those outputs' uses are rewired to it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .graph import Graph
from .graph_module import GraphModule, _copy_attr
from .node import Node

__all__ = [
    "Match",
    "ReplacedPatterns",
    "InternalMatch",
    "replace_pattern",
    "replace_pattern_with_filters",
]


class Match(NamedTuple):
    anchor: Node  # the graph node matching the pattern's (first) anchor
    nodes_map: dict  # pattern node -> graph node


@dataclass
class ReplacedPatterns:
    anchor: Node
    nodes_map: dict[Node, Node]
    replacements: list[Node]  # the nodes copied in from the replacement


@dataclass
class InternalMatch:
    """One match while matching (what ``match_filters`` receive)."""

    anchors: list[Node]
    nodes_map: dict[Node, Node] = field(default_factory=dict)
    placeholder_nodes: list[Node] = field(default_factory=list)
    returning_nodes: list[Node] = field(default_factory=list)

    def __copy__(self) -> InternalMatch:
        return InternalMatch(
            self.anchors,
            dict(self.nodes_map),
            list(self.placeholder_nodes),
            list(self.returning_nodes),
        )


def _as_graph_module(fn_or_gm: Callable | GraphModule | Graph, what: str) -> GraphModule:
    if isinstance(fn_or_gm, GraphModule):
        return fn_or_gm
    if isinstance(fn_or_gm, Graph):
        from ember.nn import Module

        return GraphModule(fn_or_gm.owning_module or Module(), fn_or_gm)
    if not callable(fn_or_gm):
        raise TypeError(
            f"replace_pattern: the {what} must be a function, a GraphModule or a "
            f"Graph, got {type(fn_or_gm).__name__}"
        )
    from .tracer import symbolic_trace

    return symbolic_trace(fn_or_gm)


def _output_node(graph: Graph) -> Node:
    return next(n for n in reversed(graph.nodes) if n.op == "output")


def _get_attr(mod: Any, target: str) -> Any:
    for atom in target.split("."):
        mod = getattr(mod, atom)
    return mod


class _SubgraphMatcher:
    def __init__(self, pattern: Graph, ignore_literals: bool = False) -> None:
        self.pattern = pattern
        self.ignore_literals = ignore_literals
        for node in pattern.nodes:
            if node.op != "output" and not node.users:
                raise ValueError(
                    f"replace_pattern: the pattern has dead code (node {node.name!r} is unused)"
                )
        out = _output_node(pattern)
        self.placeholders = [n for n in pattern.nodes if n.op == "placeholder"]
        self.returning = out.all_input_nodes
        # a returned node read only by the output is a sink of the pattern: an anchor
        self.anchors = [n for n in self.returning if len(n.users) == 1]
        if not self.anchors:
            raise ValueError("replace_pattern: the pattern returns no computed value")

    def _nodes_equal(self, pn: Node, gn: Node) -> bool:
        if pn.op == "placeholder":
            return True  # a pattern input matches any value
        if pn.op != gn.op:
            return False
        if pn.op == "get_attr":  # constant tensors match by kind, not value (as torch.fx)
            from ember import Tensor

            pv = _get_attr(pn.graph.owning_module, pn.target)
            gv = _get_attr(gn.graph.owning_module, gn.target)
            return type(pv) is type(gv) and isinstance(pv, Tensor)
        if pn.op == "call_function":
            return pn.target is gn.target
        return pn.target == gn.target

    def _literals(self, pa: Any, ga: Any, match: InternalMatch) -> bool:
        if isinstance(pa, Node):  # a pattern input standing for a literal of the graph
            if pa.op != "placeholder":
                return False
            if pa in match.nodes_map:
                return match.nodes_map[pa] == ga
            match.nodes_map[pa] = ga
            return True
        if isinstance(ga, Node):
            return False
        return type(ga) is type(pa) and ga == pa

    def _args(self, pargs: list, gargs: list, match: InternalMatch) -> bool:
        if len(pargs) != len(gargs):
            return False
        for pa, ga in zip(pargs, gargs):
            if isinstance(pa, Node) and isinstance(ga, Node):
                ok = self._match_nodes(pa, ga, match)
            elif isinstance(pa, (list, tuple)) and isinstance(ga, (list, tuple)):
                ok = self._args(list(pa), list(ga), match)
            else:
                ok = self._literals(pa, ga, match) or self.ignore_literals
            if not ok:
                return False
        return True

    def _match_nodes(self, pn: Node, gn: Node, match: InternalMatch) -> bool:
        if pn in match.nodes_map:
            return match.nodes_map[pn] is gn
        if any(v is gn for v in match.nodes_map.values()):
            return False  # one graph node stands for one pattern node
        if not self._nodes_equal(pn, gn):
            return False
        saved = dict(match.nodes_map)
        match.nodes_map[pn] = gn
        if pn.op == "placeholder":
            return True
        if list(pn.kwargs) != list(gn.kwargs) or not self._args(
            [*pn.args, *pn.kwargs.values()], [*gn.args, *gn.kwargs.values()], match
        ):
            match.nodes_map.clear()
            match.nodes_map.update(saved)
            return False
        return True

    def _contained(self, nodes_map: dict) -> bool:
        """No value computed inside the match (other than its outputs) is read outside it."""
        inner = {gn: pn for pn, gn in nodes_map.items() if pn.op != "placeholder"}
        for gn, pn in inner.items():
            if pn in self.returning:
                continue
            if any(u not in inner for u in gn.users):
                return False
        return True

    def match(self, graph: Graph) -> list[InternalMatch]:
        candidates = [
            (a, [n for n in graph.nodes if self._nodes_equal(a, n)]) for a in self.anchors
        ]
        found: list[InternalMatch] = []

        def search(i: int, m: InternalMatch) -> None:
            if i == len(candidates):
                m.placeholder_nodes = [m.nodes_map[p] for p in self.placeholders]
                m.returning_nodes = [m.nodes_map[p] for p in self.returning]
                found.append(m)
                return
            anchor, nodes = candidates[i]
            for gn in nodes:
                trial = copy.copy(m)
                if self._match_nodes(anchor, gn, trial):
                    search(i + 1, trial)

        search(0, InternalMatch(self.anchors))
        found = [m for m in found if self._contained(m.nodes_map)]
        taken: set[Node] = set()
        out = []
        for m in found:  # overlapping matches: the first found wins
            inner = [g for p, g in m.nodes_map.items() if p.op not in ("placeholder", "output")]
            if any(g in taken for g in inner):
                continue
            taken.update(inner)
            out.append(m)
        return out


def replace_pattern(
    gm: GraphModule, pattern: Callable | GraphModule, replacement: Callable | GraphModule
) -> list[Match]:
    """Replace each non-overlapping match of ``pattern`` in ``gm.graph`` with ``replacement``.

    ``pattern`` and ``replacement`` are functions (traced here) or GraphModules taking the
    same inputs and returning the same number of values (one, or a tuple of several).
    Matched intermediate values may not be used outside the match. Returns the matches;
    ``gm`` is recompiled.
    """
    return [
        Match(anchor=m.anchor, nodes_map=m.nodes_map)
        for m in _replace(gm, pattern, replacement, None, False, None)
    ]


def replace_pattern_with_filters(
    gm: GraphModule,
    pattern: Callable | GraphModule | Graph,
    replacement: Callable | GraphModule | Graph | None = None,
    match_filters: list[Callable[[InternalMatch, Graph, Graph], bool]] | None = None,
    ignore_literals: bool = False,
    replacement_callback: Callable[[InternalMatch, Graph, Graph], Graph] | None = None,
) -> list[ReplacedPatterns]:
    """:func:`replace_pattern` keeping only the matches every ``match_filters(match,
    original_graph, pattern_graph)`` accepts; ``ignore_literals`` lets literal arguments
    differ; ``replacement_callback(match, original_graph, pattern_graph)`` gives each match's
    replacement graph (instead of ``replacement``). Returns :class:`ReplacedPatterns`."""
    return _replace(gm, pattern, replacement, match_filters, ignore_literals, replacement_callback)


def _replace(gm, pattern, replacement, match_filters, ignore_literals, callback):
    if not isinstance(gm, GraphModule):
        raise TypeError(f"replace_pattern: expected a GraphModule, got {type(gm).__name__}")
    if replacement is None and callback is None:
        raise ValueError("replace_pattern: give a replacement or a replacement_callback")
    p_graph = _as_graph_module(pattern, "pattern").graph
    r_mod = None if replacement is None else _as_graph_module(replacement, "replacement")
    graph = gm.graph
    matcher = _SubgraphMatcher(p_graph, ignore_literals)
    if r_mod is not None:  # a mismatch is an error even where nothing matches
        _check_inputs(len(matcher.placeholders), r_mod.graph)
    matches = matcher.match(graph)
    matches = [m for m in matches if all(f(m, graph, p_graph) for f in match_filters or ())]
    changed: dict[Node, Node] = {}  # a matched output -> what replaced it
    out: list[ReplacedPatterns] = []
    for m in matches:
        r_graph = callback(m, graph, p_graph) if callback is not None else r_mod.graph
        r_inputs = _check_inputs(len(m.placeholder_nodes), r_graph)
        val_map: dict[Node, Any] = {}
        for r_in, g in zip(r_inputs, m.placeholder_nodes):
            if isinstance(g, Node) and g in changed:  # an earlier replacement produced it
                new = changed[g]
                m.placeholder_nodes[m.placeholder_nodes.index(g)] = new
                for k, v in m.nodes_map.items():
                    if v is g:
                        m.nodes_map[k] = new
                        break
                g = new
            val_map[r_in] = g
        users = {u for n in m.returning_nodes for u in n.users}
        where = next((n for n in graph.nodes if n in users), None)
        if where is None:  # no users: right after the last matched output
            nodes = list(graph.nodes)
            last = max(nodes.index(n) for n in m.returning_nodes)
            where = nodes[last + 1] if last + 1 < len(nodes) else None
        with graph.inserting_before(where):
            copied = graph.graph_copy(r_graph, val_map)
        copied = (copied,) if isinstance(copied, Node) else tuple(copied or ())
        if len(copied) != len(m.returning_nodes):
            raise ValueError(
                f"replace_pattern: the pattern returns {len(m.returning_nodes)} "
                f"values but the replacement returns {len(copied)}"
            )
        new_nodes = [v for v in val_map.values() if v not in m.placeholder_nodes]
        for g, c in zip(m.returning_nodes, copied):
            g.replace_all_uses_with(c)
            changed[g] = c
        for pn in reversed(list(p_graph.nodes)):
            if pn.op not in ("placeholder", "output"):
                graph.erase_node(m.nodes_map[pn])
        owner = r_mod if r_mod is not None else r_graph.owning_module
        for n in r_graph.nodes:
            if (
                n.op in ("get_attr", "call_module")
                and owner is not None
                and not _has_path(gm, n.target)
            ):
                _copy_attr(owner, gm, n.target)
        out.append(
            ReplacedPatterns(anchor=m.anchors[0], nodes_map=m.nodes_map, replacements=new_nodes)
        )
    gm.recompile()
    return out


def _check_inputs(n_pattern: int, r_graph: Graph) -> list[Node]:
    r_inputs = [n for n in r_graph.nodes if n.op == "placeholder"]
    if n_pattern != len(r_inputs):
        raise ValueError(
            f"replace_pattern: the pattern takes {n_pattern} inputs but the "
            f"replacement takes {len(r_inputs)}"
        )
    return r_inputs


def _has_path(mod, target: str) -> bool:
    obj = mod
    for atom in target.split("."):
        if not hasattr(obj, atom):
            return False
        obj = getattr(obj, atom)
    return True
