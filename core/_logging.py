"""``ember._logging``: ``set_logs`` (torch._logging.set_logs) for the compiler's logs.

``set_logs(graph_breaks=True)`` prints each graph break of ``ember.compile`` with its reason,
``recompiles=True`` each recompilation, ``graph=True`` / ``graph_code=True`` each captured
graph (as nodes / as Python), ``output_code=True`` the code ember runs for it,
``dynamo=logging.INFO`` (or ``DEBUG``) the compiler's progress. Names torch has that ember's
compiler has no log for (``inductor``, ``aot``, ``fusion``, ``dynamic`` ...) are accepted and do
nothing.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["set_logs"]

# artifact switches (True/False) and the loggers they open at DEBUG
_ARTIFACTS = {
    "graph_breaks": "ember._dynamo.graph_breaks",
    "recompiles": "ember._dynamo.recompiles",
    "graph": "ember._dynamo.graph",  # core/_compile/_artifact_logs.py
    "graph_code": "ember._dynamo.graph_code",
    "output_code": "ember._dynamo.output_code",
}
# component levels (a logging level or None) and their loggers
_COMPONENTS = {"dynamo": "ember._dynamo", "export": "ember.export"}
# torch's other names: accepted so ported scripts run; ember has no such log
_SILENT = frozenset(
    {
        "all",
        "aot",
        "aot_graphs",
        "aot_joint_graph",
        "bytecode",
        "compiled_autograd",
        "cudagraphs",
        "ddp_graphs",
        "distributed",
        "dynamic",
        "fsdp",
        "graph_sizes",
        "guards",
        "inductor",
        "onnx",
        "perf_hints",
        "post_grad_graphs",
        "schedule",
        "trace_source",
        "verbose_guards",
        "fusion",
        "modules",
        "cache",
    }
)
_handler: logging.Handler | None = None


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (pytest's capture, a notebook)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def _attach(logger: logging.Logger) -> None:
    global _handler
    if _handler is None:
        _handler = _StderrHandler()
        _handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
    if _handler not in logger.handlers:
        logger.addHandler(_handler)
    logger.propagate = False


def set_logs(**kwargs) -> None:
    """Set the compiler's log levels: ``set_logs(graph_breaks=True, dynamo=logging.INFO)``.

    Each call resets every log not named to its default (off), as torch's does.
    """
    for name in kwargs:
        if name not in _ARTIFACTS and name not in _COMPONENTS and name not in _SILENT:
            known = sorted({*_ARTIFACTS, *_COMPONENTS, *_SILENT})
            raise ValueError(f"set_logs: unknown log {name!r}; expected one of: {', '.join(known)}")
    for name, logger_name in _ARTIFACTS.items():
        on = kwargs.get(name, False)
        if not isinstance(on, bool):
            raise TypeError(f"set_logs: {name} takes True or False, got {on!r}")
        logger = logging.getLogger(logger_name)
        logger.setLevel(logging.DEBUG if on else logging.WARNING)
        if on:
            _attach(logger)
    for name, logger_name in _COMPONENTS.items():
        level = kwargs.get(name)
        if level is not None and not isinstance(level, int):
            raise TypeError(f"set_logs: {name} takes a logging level (logging.INFO), got {level!r}")
        logger = logging.getLogger(logger_name)
        logger.setLevel(logging.WARNING if level is None else level)
        if level is not None and level < logging.WARNING:
            _attach(logger)
