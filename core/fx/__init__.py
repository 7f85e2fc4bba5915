"""ember.fx: torch.fx's graph capture on ember — the one graph IR under export, jit, onnx,
quantization's FX mode and compile (docs/fx.md)."""

from . import passes, subgraph_rewriter
from ._patch import wrap
from .graph import Graph, PythonCode
from .graph_module import GraphModule
from .interpreter import Interpreter, Transformer
from .node import Node, has_side_effect, map_aggregate, map_arg
from .proxy import Attribute, ParameterProxy, Proxy, TraceError
from .serialize import graph_from_json, graph_to_json
from .subgraph_rewriter import replace_pattern
from .tracer import PH, Tracer, symbolic_trace

__all__ = [
    "PH",
    "Graph",
    "GraphModule",
    "Interpreter",
    "Node",
    "Proxy",
    "Tracer",
    "Transformer",
    "Attribute",
    "ParameterProxy",
    "PythonCode",
    "TraceError",
    "graph_from_json",
    "graph_to_json",
    "has_side_effect",
    "map_aggregate",
    "map_arg",
    "passes",
    "replace_pattern",
    "subgraph_rewriter",
    "symbolic_trace",
    "wrap",
]
