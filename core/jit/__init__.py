"""ember.jit: torch.jit's API on ember's one graph IR (ember.fx) — ``trace`` records the ops
a run executes, ``script`` compiles Python source (``ember.jit._script``), and compiled
programs save to / load from the safe archive of ember.export (docs/export.md)."""

from . import _script  # noqa: E402,I001  (registers what scripted graphs call as safe to load)
from ._decorators import export, ignore, is_scripting, is_tracing, unused
from ._freeze import freeze, optimize_for_inference
from ._script_module import (
    RecursiveScriptModule,
    ScriptFunction,
    ScriptModule,
    TopLevelTracedModule,
)
from ._serialization import load, save
from ._trace import TracerWarning, TracingCheckError, trace, trace_module

__all__ = [
    "RecursiveScriptModule",
    "ScriptFunction",
    "ScriptModule",
    "TopLevelTracedModule",
    "TracerWarning",
    "TracingCheckError",
    "export",
    "freeze",
    "ignore",
    "is_scripting",
    "is_tracing",
    "load",
    "optimize_for_inference",
    "save",
    "script",
    "trace",
    "trace_module",
    "unused",
]


def script(obj, *args, **kwargs):
    """Compile ``obj`` (a Module or function) from its Python source (ember.jit._script)."""
    from ._script import script as _compile

    return _compile(obj, *args, **kwargs)
