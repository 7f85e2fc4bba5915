"""``ember.jit.script``: compile the Python source of ``forward`` into an ember.fx graph.

The subset is TorchScript's practical one (docs/export.md, "ember.jit.script"): tensor ops;
``if``/``else`` on tensors and shapes (kept as ``ember.cond``) and on constants and module
attributes (decided while compiling); ``for`` over ``range``/ModuleList/``zip``/lists (unrolled)
or over a run-time ``range`` and ``while`` on run-time conditions (``ember.while_loop``);
early ``return``; tuples, lists and dicts of tensors; annotations; calls to submodules, to
methods and functions (compiled from source) and to other scripted functions; and
``@ember.jit.ignore`` / ``unused`` / ``export``. What it cannot compile raises
:class:`ScriptCompileError` naming the file and line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ember.fx import _patch
from ember.fx.graph import Graph
from ember.fx.graph_module import GraphModule, _copy_attr
from ember.fx.node import has_side_effect
from ember.nn import Module

from . import _runtime
from ._calls import modifier
from ._compiler import Compiler, _Raise
from ._graphs import ScriptTracer, dead_code
from ._values import RunTimeValueError, ScriptCompileError

__all__ = ["script", "compile_function", "ScriptCompileError"]

for _fn in (_runtime.script_assert, _runtime.raise_exception, _runtime.unused_called):
    has_side_effect(_fn)


def _register_safe_targets() -> None:
    # saved archives (ember.export._archive) load only known-safe call targets
    import operator

    try:
        from ember.export._archive import register_safe_target
    except ImportError:
        return
    for fn in _runtime.SAFE:
        register_safe_target(f"{fn.__module__}.{fn.__qualname__}", fn)
    register_safe_target("operator.is_", operator.is_)
    register_safe_target("operator.is_not", operator.is_not)


_register_safe_targets()


def _patch_leaves(patcher: _patch.Patcher) -> None:
    """Record ember's fused kernels that run Functions (an RNN layer) as single nodes."""
    import importlib

    for (mod_name, name), stand_in in _runtime.SCRIPT_LEAVES.items():
        mod = importlib.import_module(mod_name)
        if isinstance(stand_in, _runtime._Apply):  # a Function class: patch its ``apply``
            from types import SimpleNamespace

            stand_in = SimpleNamespace(apply=_patch.tracing_wrapper(stand_in.fn))
        else:
            stand_in = _patch.tracing_wrapper(stand_in)
        patcher.set_item(mod.__dict__, name, stand_in)


def _arg_types(fn: Callable, args: list) -> dict:
    """Placeholder node -> the annotation of its parameter (TorchScript's static types:
    an input annotated ``tuple[Tensor, Tensor]`` unpacks and has a known length)."""
    import inspect
    import typing

    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001  (an annotation naming what is not importable)
        return {}
    names = [p for p in inspect.signature(fn).parameters][-len(args) :] if args else []
    return {a.node: hints[n] for n, a in zip(names, args) if n in hints and hasattr(a, "node")}


def compile_function(
    fn: Callable, root: Module | None = None, name: str | None = None, cls: type = GraphModule
) -> GraphModule:
    """Compile ``fn`` (a function, or ``type(root).forward``-like method taking ``root``
    first) into a GraphModule whose graph has only placeholder / get_attr / call_function /
    call_method / output nodes (data-dependent control flow as ``ember.cond`` /
    ``ember.while_loop`` over GraphModule submodules)."""
    is_method = root is not None
    root_module = root if root is not None else Module()
    tracer = ScriptTracer(None)
    compiler = Compiler(tracer)
    tracer.compiler = compiler
    tracer.root = root_module
    tracer.graph = tracer.top = tracer.new_graph()
    tracer._index_root()
    args = tracer._placeholders(fn, is_method, {})
    tracer.arg_types = _arg_types(fn, args)
    with _patch.Patcher() as patcher:
        tracer._patcher = patcher
        try:
            tracer._patch_all(patcher, {}, fn)
            _patch_leaves(patcher)
            bound = (root_module,) if is_method else ()
            try:
                result = compiler.run_function(fn, (*bound, *args), {})
            except _Raise:  # the function always raises
                result = None
            tracer.create_node("output", "output", (tracer.create_arg(result),), {})
        finally:
            tracer._patcher = None
    graph = tracer.graph
    subs = tracer.submods.get(graph, {})
    dead_code(graph, subs)
    holder = Module()
    for node in graph.nodes:
        if node.op == "get_attr" and node.target not in subs:
            _copy_attr(root_module, holder, node.target)
    for sub_name, gm in subs.items():
        holder.add_module(sub_name, gm)
    out = cls(holder, graph, name or (type(root).__name__ if is_method else fn.__name__))
    out.train(root_module.training)
    return out


def _needs_run_time_values(err: BaseException) -> bool:
    """Whether compiling stopped at a value only the run has (``.tolist()``, ``int(t)``)."""
    from ember.fx.proxy import TraceError

    seen = err
    while seen is not None:
        if isinstance(seen, (TraceError, RunTimeValueError)):
            return True
        seen = seen.__cause__
    return False


def _script_module(module: Module) -> Module:
    from . import _wrappers

    fwd = type(module).forward
    if fwd is Module.forward:
        raise ScriptCompileError(f"{type(module).__name__} has no forward to compile")
    if modifier(fwd) is not None and modifier(fwd) != "export":
        raise ScriptCompileError(
            f"{type(module).__name__}.forward is marked @"
            f"{modifier(fwd)}; there is nothing to compile"
        )
    out = compile_function(fwd, module, type(module).__name__, _wrappers.module_class())
    try:  # torch's hierarchy: scripted.dg prints as MyDecisionGate(original_name=...)
        from .._submodules import apply_module_names, module_names

        apply_module_names(out, module_names(module))
    except ImportError:
        pass
    for attr in dir(type(module)):
        meth = getattr(type(module), attr, None)
        if attr != "forward" and callable(meth) and modifier(meth) == "export":
            _wrappers.add_method(
                out, attr, compile_function(meth, module, f"{type(module).__name__}_{attr}")
            )
    return out


def script(
    obj: Any,
    optimize: Any = None,
    _frames_up: int = 0,
    _rcb: Any = None,
    example_inputs: Any = None,
) -> Any:
    """Compile a Module's ``forward`` (and its ``@ember.jit.export`` methods) or a function
    from its Python source (torch.jit.script).

    Args:
        obj: an ``ember.nn.Module`` or a function defined in a file (a class comes back
            unchanged, usable from eager code only).
        optimize: ignored (deprecated in PyTorch too).
        example_inputs: accepted for torch's signature; types come from the source.

    Returns:
        A ScriptModule (for a Module) or ScriptFunction (for a function) wrapping the
        compiled GraphModule: ``.graph``, ``.code``; calling it runs the graph.
    """
    from . import _wrappers

    if _wrappers.is_scripted(obj):
        return obj
    if isinstance(obj, Module):
        return _script_module(obj)
    if isinstance(obj, type):
        # torch registers a TorchScript class and hands back the class itself, which eager
        # code keeps using (PyTorch Geometric scripts ``SelectOutput`` at import); ember
        # compiles no classes, so scripted code cannot construct it
        return obj
    if callable(obj) and hasattr(obj, "__code__"):
        if modifier(obj) in ("ignore", "unused"):
            return obj
        try:
            gm = compile_function(obj)
        except ScriptCompileError as e:
            if not _needs_run_time_values(e):
                raise
            # TorchScript interprets ``x.tolist()`` / ``int(t)`` at run time; a graph cannot
            # hold their values, so the function runs as Python (the same results)
            return _wrappers.eager_function(obj, str(e))
        out = _wrappers.wrap_function(gm, obj.__name__)
        try:
            out._ember_script_original = obj  # scripted callers compile ``obj`` inline
        except AttributeError:
            pass
        return out
    raise ScriptCompileError(
        f"ember.jit.script: expected a Module or a function, got {type(obj).__name__}"
    )
