"""The graph as JSON: the form saved artifacts (export, jit) keep, never pickled code.

``graph_to_json(graph)`` writes every node as ``{"name", "op", "target", "args", "kwargs"}``
(plus simple ``meta``: ``tensor_meta`` shapes/dtypes); ``call_function`` targets are written
by qualified name (``ember.nn.functional.linear``, ``operator.add``) and ``graph_from_json``
resolves them only within ember, ``operator`` and ``builtins.getattr`` (or ``extra_targets``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from ._names import resolve_target, target_name
from .graph import Graph
from .node import Node

__all__ = ["graph_to_json", "graph_from_json", "FORMAT_VERSION"]

FORMAT_VERSION = 1


def _enc(a: Any) -> Any:
    from ember.backend.device import device
    from ember.backend.dtype import dtype

    if isinstance(a, Node):
        return {"node": a.name}
    if a is None or isinstance(a, (bool, int, str)):
        return a
    if isinstance(a, float):
        return a if math.isfinite(a) else {"float": repr(a)}
    if isinstance(a, tuple):
        return {"tuple": [_enc(e) for e in a]}
    if isinstance(a, list):
        return [_enc(e) for e in a]
    if isinstance(a, dict):
        return {"dict": {k: _enc(v) for k, v in a.items()}}
    if isinstance(a, slice):
        return {"slice": [_enc(a.start), _enc(a.stop), _enc(a.step)]}
    if isinstance(a, range):
        return {"range": [a.start, a.stop, a.step]}
    if a is Ellipsis:
        return {"ellipsis": True}
    if isinstance(a, complex):
        return {"complex": [a.real, a.imag]}
    if isinstance(a, dtype):
        return {"dtype": repr(a).split(".")[-1]}
    if isinstance(a, device):
        return {"device": str(a)}
    raise TypeError(f"graph_to_json: cannot serialize an argument of type {type(a).__name__}")


def _dec(a: Any, env: dict[str, Node]) -> Any:
    import ember

    if isinstance(a, list):
        return [_dec(e, env) for e in a]
    if not isinstance(a, dict):
        return a
    ((kind, v),) = a.items()
    if kind == "node":
        if v not in env:
            raise ValueError(f"graph_from_json: node {v!r} is used before it is defined")
        return env[v]
    if kind == "tuple":
        return tuple(_dec(e, env) for e in v)
    if kind == "dict":
        return {k: _dec(e, env) for k, e in v.items()}
    if kind == "slice":
        return slice(*(_dec(e, env) for e in v))
    if kind == "range":
        return range(*v)
    if kind == "float":
        return float(v)
    if kind == "ellipsis":
        return Ellipsis
    if kind == "complex":
        return complex(*v)
    if kind == "dtype":
        from ember.backend.dtype import dtype

        d = getattr(ember, v, None)
        if not isinstance(d, dtype):
            raise ValueError(f"graph_from_json: unknown dtype {v!r}")
        return d
    if kind == "device":
        return ember.device(v)
    raise ValueError(f"graph_from_json: unknown argument encoding {kind!r}")


def _meta(node: Node) -> dict:
    tm = node.meta.get("tensor_meta")
    if tm is None or not hasattr(tm, "shape"):
        return {}
    return {
        "tensor_meta": {
            "shape": list(tm.shape),
            "dtype": repr(tm.dtype).split(".")[-1],
            "requires_grad": bool(tm.requires_grad),
        }
    }


def _subgraph(graph: Graph, node: Node) -> Any:
    """The GraphModule a ``get_attr`` node names in the graph's owning module, if any."""
    from .graph_module import GraphModule

    if node.op != "get_attr" or graph.owning_module is None:
        return None
    obj: Any = graph.owning_module
    for part in node.target.split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, GraphModule) else None


def graph_to_json(graph: Graph, indent: int | None = None) -> str:
    """Serialize ``graph`` to a JSON string (no code, no weights)."""
    nodes = []
    for n in graph.nodes:
        target = target_name(n.target) if n.op == "call_function" else n.target
        rec = {
            "name": n.name,
            "op": n.op,
            "target": target,
            "args": _enc(n.args),
            "kwargs": _enc(n.kwargs),
        }
        meta = _meta(n)
        if meta:
            rec["meta"] = meta
        sub = _subgraph(graph, n)
        if sub is not None:  # a cond/while_loop branch: its graph travels with the node
            rec["subgraph"] = json.loads(graph_to_json(sub.graph))
        nodes.append(rec)
    return json.dumps(
        {"format": "ember.fx.graph", "version": FORMAT_VERSION, "nodes": nodes}, indent=indent
    )


def graph_from_json(text: str | dict, extra_targets: dict[str, Callable] | None = None) -> Graph:
    """Rebuild a Graph from :func:`graph_to_json`'s output, resolving targets safely."""
    doc = json.loads(text) if isinstance(text, (str, bytes)) else text
    if not isinstance(doc, dict) or doc.get("format") != "ember.fx.graph":
        raise ValueError("graph_from_json: not an ember.fx graph document")
    if doc.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"graph_from_json: format version {doc.get('version')!r} is not "
            f"supported (this ember reads version {FORMAT_VERSION})"
        )
    g = Graph()
    env: dict[str, Node] = {}
    for rec in doc["nodes"]:
        op = rec["op"]
        target = rec["target"]
        if op == "call_function":
            target = resolve_target(target, extra_targets)
        node = g.create_node(
            op, target, _dec(rec["args"], env), _dec(rec["kwargs"], env), name=rec["name"]
        )
        if node.name != rec["name"]:
            raise ValueError(f"graph_from_json: node name {rec['name']!r} is not unique")
        meta = rec.get("meta", {}).get("tensor_meta")
        if meta:
            from .passes.shape_prop import TensorMetadata

            node.meta["tensor_meta"] = TensorMetadata(
                tuple(meta["shape"]),
                _dec({"dtype": meta["dtype"]}, env),
                meta.get("requires_grad", False),
                None,
                None,
                False,
                {},
            )
        if "subgraph" in rec:  # GraphModule(dict_root, graph) builds it (graph_module.py)
            node.meta["subgraph"] = graph_from_json(rec["subgraph"], extra_targets)
        env[node.name] = node
    return g


# ---- flat pickling state (Graph.__getstate__): raw targets, node references by name ---------
def _flat_nodes(graph: Graph) -> list:
    def ref(a):
        from .node import map_arg

        return map_arg(a, lambda n: _NodeRef(n.name))

    return [
        (n.name, n.op, _pickle_target(n), ref(n.args), ref(n.kwargs), n.type, dict(n.meta))
        for n in graph.nodes
    ]


def _pickle_target(n: Node) -> Any:
    # ember's functions pickle by their public name (some are closures pickle cannot name)
    if n.op == "call_function":
        name = target_name(n.target)
        try:
            if resolve_target(name) is n.target:
                return _TargetRef(name)
        except ValueError:
            pass
    return n.target


class _TargetRef:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self):
        return (_TargetRef, (self.name,))


class _NodeRef:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self):
        return (_NodeRef, (self.name,))


def _unflatten_into(g: Graph, flat: list) -> None:
    from .node import map_aggregate

    env: dict[str, Node] = {}

    def deref(a):
        return map_aggregate(a, lambda x: env[x.name] if isinstance(x, _NodeRef) else x)

    for name, op, target, args, kwargs, type_expr, meta in flat:
        if isinstance(target, _TargetRef):
            target = resolve_target(target.name)
        node = g.create_node(op, target, deref(args), deref(kwargs), name=name, type_expr=type_expr)
        node.meta = meta
        env[name] = node
