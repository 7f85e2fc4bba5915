"""ember.jit: torch.jit's API on ember's one graph IR (ember.fx) — ``trace`` records the ops
a run executes, ``script`` compiles Python source (``ember.jit._script``), and compiled
programs save to / load from the safe archive of ember.export (docs/export.md)."""

from . import _script  # noqa: E402,I001  (registers what scripted graphs call as safe to load)
from ._decorators import export, ignore, is_scripting, is_tracing, unused
from ._eager_api import (
    _overload,
    _overload_method,
    Attribute,
    Error,
    Final,
    Future,
    ScriptWarning,
    annotate,
    fork,
    fuser,
    interface,
    isinstance,
    optimized_execution,
    script_if_tracing,
    set_fusion_strategy,
    strict_fusion,
    wait,
)
from ._freeze import freeze, optimize_for_inference
from ._script_module import (
    RecursiveScriptModule,
    ScriptFunction,
    ScriptModule,
    TopLevelTracedModule,
    script_method,
)
from ._serialization import load, save
from ._trace import TracerWarning, TracingCheckError, trace, trace_module
from ._trace_graph import get_trace_graph as _get_trace_graph

__all__ = [
    "Attribute",
    "Error",
    "Final",
    "Future",
    "RecursiveScriptModule",
    "ScriptWarning",
    "ScriptFunction",
    "ScriptModule",
    "TopLevelTracedModule",
    "TracerWarning",
    "TracingCheckError",
    "annotate",
    "enable_onednn_fusion",
    "export",
    "fork",
    "freeze",
    "fuser",
    "ignore",
    "interface",
    "is_scripting",
    "is_tracing",
    "isinstance",
    "load",
    "onednn_fusion_enabled",
    "optimize_for_inference",
    "optimized_execution",
    "save",
    "script",
    "script_if_tracing",
    "script_method",
    "set_fusion_strategy",
    "strict_fusion",
    "trace",
    "trace_module",
    "unused",
    "wait",
]


_onednn_fusion = [False]


def enable_onednn_fusion(enabled: bool) -> None:
    """PyTorch's switch for oneDNN Graph fusion of traced CPU graphs. ember has no oneDNN: the
    setting is kept (:func:`onednn_fusion_enabled` reports it) and changes nothing."""
    if not isinstance(enabled, bool):
        raise TypeError(f"enable_onednn_fusion: expected a bool, got {enabled!r}")
    _onednn_fusion[0] = enabled


def onednn_fusion_enabled() -> bool:
    """What :func:`enable_onednn_fusion` last set (False at start)."""
    return _onednn_fusion[0]


def script(obj, *args, **kwargs):
    """Compile ``obj`` (a Module or function) from its Python source (ember.jit._script)."""
    from ._script import script as _compile

    return _compile(obj, *args, **kwargs)
