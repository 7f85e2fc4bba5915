"""The compiler's artifact logs: ``ember._logging.set_logs(graph=True / graph_code=True /
output_code=True)`` (torch's ``TORCH_LOGS="graph"`` ...) print each newly compiled entry's
captured graph, its Python code, and the straight-line code ember runs for it."""

from __future__ import annotations

import logging
from typing import Any

_graph_log = logging.getLogger("ember._dynamo.graph")
_graph_code_log = logging.getLogger("ember._dynamo.graph_code")
_output_code_log = logging.getLogger("ember._dynamo.output_code")


def log_entry(name: str, entry: Any) -> None:
    """Log a compiled entry's artifacts to the loggers that are on (formatting only then)."""
    if entry.fn is None or entry.graph is None:  # a graph break: the graph_breaks log says so
        return
    if _graph_log.isEnabledFor(logging.DEBUG):
        _graph_log.debug("TRACED GRAPH\n ===== %s =====\n%s", name, entry.graph)
    if _graph_code_log.isEnabledFor(logging.DEBUG):
        from ember.fx import GraphModule

        code = GraphModule(entry.root, entry.graph).code
        _graph_code_log.debug("TRACED GRAPH\n ===== %s =====\n%s", name, code.strip("\n"))
    if _output_code_log.isEnabledFor(logging.DEBUG) and entry.source:
        _output_code_log.debug("Output code of %s:\n%s", name, entry.source.rstrip())
