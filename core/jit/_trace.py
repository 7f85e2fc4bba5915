"""``ember.jit.trace`` / ``trace_module``: record the ops a run actually executes.

The model runs once on the example inputs under ember.export's recording tracer: the graph
follows the branches taken on those inputs (as torch.jit.trace's does), sizes read from
inputs stay symbolic (``x.view(x.size(0), -1)`` works at other batch sizes), and turning a
tensor into a Python value (``if x.sum() > 0``) warns ``TracerWarning`` and bakes it in.
``check_trace`` re-traces on ``check_inputs`` (or the example inputs) and compares: a
different graph raises :class:`TracingCheckError`, different outputs warn ``TracerWarning``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from ember.export._export import capture
from ember.export._recorder import RecordingTracer, TracerWarning
from ember.fx import GraphModule

from . import _decorators
from ._script_module import ScriptFunction, ScriptModule, TopLevelTracedModule
from ._submodules import attach_submodules

__all__ = ["trace", "trace_module", "TracerWarning", "TracingCheckError"]

_NONDETERMINISTIC = ("dropout", "rand", "bernoulli", "multinomial", "normal")


class TracingCheckError(Exception):
    """The traced program did not pass ``check_trace``'s sanity checks."""

    def __init__(
        self,
        graph_diff_error: str | None,
        tensor_compare_error: str | None = None,
        extra_msg: str | None = None,
    ) -> None:
        self.message = "Tracing failed sanity checks!\n"
        if extra_msg is not None:
            self.message += extra_msg + "\n"
        if graph_diff_error is not None:
            self.message += "ERROR: Graphs differed across invocations!\n" + graph_diff_error
        if tensor_compare_error is not None:
            self.message += (
                "ERROR: Tensor-valued Constant nodes differed in value across "
                "invocations.\n" + tensor_compare_error
            )
        super().__init__(self.message)


def _as_tuple(example_inputs: Any) -> tuple:
    from ember import Tensor

    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):  # torch.jit.trace takes a list as the arguments too
        return tuple(example_inputs)
    if isinstance(example_inputs, (Tensor, dict)) or example_inputs is not None:
        return (example_inputs,)
    return ()


def _record(fn, args: tuple, kwargs: dict, quiet: bool = False):
    _decorators._state["tracing"] += 1
    try:
        with warnings.catch_warnings():
            if quiet:
                warnings.simplefilter("ignore", TracerWarning)
            tracer = RecordingTracer("jit")
            graph, root, out = capture(tracer, fn, args, kwargs)
    finally:
        _decorators._state["tracing"] -= 1
    _drop_defaulted_inputs(graph, len(args), kwargs)
    return graph, root, out


def _drop_defaulted_inputs(graph, n_args: int, kwargs: dict) -> None:
    """Remove the inputs the example did not give (parameters left at their defaults, baked
    in): torch's traced graph has the example's inputs only. Keeping them would also print
    a mutable default as it is after the run (``cache=[...]`` grows at each run), so the
    check trace would see a different graph."""
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    for n in placeholders[n_args:]:
        if n.target not in kwargs and n.args and not n.users:
            graph.erase_node(n)


def _strict_check(out: Any, strict: bool) -> None:
    if strict and isinstance(out, (list, dict)):
        kind = type(out).__name__
        warnings.warn(
            f"Encountering a {kind} at the output of the tracer might cause the trace "
            "to be incorrect, this is only valid if the container structure does not "
            "change based on the module's inputs. Consider using a constant container "
            "instead (e.g. for `list`, use a `tuple` instead. for `dict`, use a "
            "`NamedTuple` instead). If you absolutely need this and know the side "
            "effects, pass strict=False to trace() to allow this behavior.",
            TracerWarning,
            stacklevel=3,
        )


def _flat(out: Any) -> list:
    from ember.fx.node import map_aggregate

    flat: list = []
    map_aggregate(out, lambda a: flat.append(a) or a)
    return flat


def _check(fn, traced: Callable, graph_code: str, inputs: list[tuple], tol: float, graph) -> None:
    import ember

    nondet = [
        n.name
        for n in graph.nodes
        if n.op in ("call_function", "call_method")
        and any(
            w in (n.target if isinstance(n.target, str) else getattr(n.target, "__name__", ""))
            for w in _NONDETERMINISTIC
        )
        and not _eval_dropout(n)
    ]
    for args in inputs:
        args = _as_tuple(args)
        g2, root2, _ = _record(fn, args, {}, quiet=True)
        code2 = GraphModule(_root_module(root2), g2).code
        with ember.no_grad():
            want = _flat(fn(*args))
            got = _flat(traced(*args))
        if nondet:
            warnings.warn(
                "Trace had nondeterministic nodes. Did you forget call .eval() on "
                f"your model? Nodes:\n\t{', '.join(nondet)}\nThis may cause errors "
                "in trace checking. To disable trace checking, pass "
                "check_trace=False to ember.jit.trace()",
                TracerWarning,
                stacklevel=3,
            )
        else:
            for i, (a, b) in enumerate(zip(want, got)):
                if isinstance(a, ember.Tensor) and (
                    a.shape != b.shape
                    or not ember.allclose(b.to(a.dtype), a, rtol=tol, atol=tol, equal_nan=True)
                ):
                    diff = (
                        (b.double() - a.double()).abs().max().item()
                        if a.shape == b.shape
                        else f"shapes {tuple(a.shape)} vs {tuple(b.shape)}"
                    )
                    warnings.warn(
                        f"Output nr {i + 1}. of the traced function does not match the "
                        "corresponding output of the Python function. Detailed error:\n"
                        f"Tensor-likes are not close! Greatest absolute difference: {diff} "
                        f"(up to {tol} allowed)",
                        TracerWarning,
                        stacklevel=3,
                    )
        if code2 != graph_code:
            import difflib

            diff = "\n".join(
                difflib.unified_diff(
                    graph_code.splitlines(),
                    code2.splitlines(),
                    "first trace",
                    "check trace",
                    lineterm="",
                )
            )
            raise TracingCheckError(
                "\tGraph diff:\n" + "\n".join("\t\t" + ln for ln in diff.splitlines())
            )


def _eval_dropout(n) -> bool:
    """A dropout recorded with ``training=False`` (an eval-mode model): the identity."""
    name = n.target if isinstance(n.target, str) else getattr(n.target, "__name__", "")
    if "dropout" not in name or n.op != "call_function":
        return False
    training = n.kwargs.get("training", n.args[2] if len(n.args) > 2 else True)
    return training is False


def _root_module(root):
    from ember.export._export import _Overlay

    # the user's module plus the constants made in forward, read by path
    return _AttrReader(root) if isinstance(root, _Overlay) else root


class _AttrReader(dict):
    """Lazily answers GraphModule's ``root[target]`` lookups from an export ``_Overlay``."""

    def __init__(self, ov) -> None:
        super().__init__()
        self.ov = ov

    def __contains__(self, k) -> bool:
        try:
            self[k]
            return True
        except AttributeError:
            return False

    def __getitem__(self, k):
        from ember.export._export import _read

        return _read(self.ov, k)


def _build(root, graph, class_name: str, cls=TopLevelTracedModule) -> ScriptModule:
    """A ScriptModule over the traced graph, keeping buffers as buffers."""
    from ember.export._export import _Overlay, _read
    from ember.export.exported_program import _module_tree
    from ember.export.graph_signature import ExportGraphSignature, InputKind, InputSpec

    if not isinstance(root, _Overlay):
        return cls(root, graph, class_name)
    model = root.base
    params = {k for k, _ in model.named_parameters()}
    buffers = {}
    for mname, m in model.named_modules():
        for bname, b in m._buffers.items():
            if b is not None:
                buffers[f"{mname}.{bname}" if mname else bname] = (
                    bname not in m._non_persistent_buffers_set
                )
    tensors, specs = {}, []
    # the whole state of the model (so state_dict/load_state_dict match it), then constants
    for k, p in model.named_parameters():
        tensors[k] = p
        specs.append(InputSpec(InputKind.PARAMETER, None, k))
    for k, b in model.named_buffers():
        tensors[k] = b
        specs.append(InputSpec(InputKind.BUFFER, None, k, buffers[k]))
    for n in graph.nodes:
        if n.op == "get_attr" and n.target not in tensors:
            tensors[n.target] = _read(root, n.target)
            if n.target in params:
                specs.append(InputSpec(InputKind.PARAMETER, None, n.target))
            elif n.target in buffers:
                specs.append(InputSpec(InputKind.BUFFER, None, n.target, buffers[n.target]))
    tree = _module_tree(tensors, ExportGraphSignature(specs, []))
    tree.training = model.training
    sm = cls(tree, graph, class_name)
    sm.training = model.training
    attach_submodules(sm, model)  # torch's hierarchy: traced_cell.dg, traced_cell.dg.code
    return sm


def trace(
    func,
    example_inputs: Any = None,
    optimize: Any = None,
    check_trace: bool = True,
    check_inputs: list | None = None,
    check_tolerance: float = 1e-5,
    strict: bool = True,
    _force_outplace: bool = False,
    _module_class: Any = None,
    _compilation_unit: Any = None,
    example_kwarg_inputs: dict | None = None,
    _store_inputs: bool = True,
):
    """Trace a Module or function on ``example_inputs`` into a ScriptModule/ScriptFunction.

    Args:
        func: an ``ember.nn.Module`` (its ``forward`` is traced) or a function.
        example_inputs: a tuple of inputs (a single Tensor is wrapped in a tuple).
        check_trace: re-trace on ``check_inputs`` (or the example inputs) and compare graphs
            (``TracingCheckError`` when they differ) and outputs (``TracerWarning``).
        check_inputs: list of input tuples for the check.
        check_tolerance: tolerance of the output comparison.
        strict: warn when the output is a list or dict (a mutable container).
        example_kwarg_inputs: example inputs given by keyword instead.
    """
    from ember.nn import Module

    if isinstance(func, (ScriptModule, ScriptFunction)):
        warnings.warn(
            "The input to trace is already a ScriptModule, tracing it is a no-op. "
            "Returning the object as is.",
            stacklevel=2,
        )
        return func
    if isinstance(func, Module):
        return trace_module(
            func,
            {"forward": example_inputs},
            None,
            check_trace,
            [{"forward": c} for c in check_inputs] if check_inputs else None,
            check_tolerance,
            strict,
            _force_outplace,
            _module_class,
            example_inputs_is_kwarg=example_kwarg_inputs is not None,
            _kwargs=example_kwarg_inputs,
        )
    if not callable(func):
        raise TypeError(
            f"ember.jit.trace expects a Module or a function, got {type(func).__name__}"
        )
    args = _as_tuple(example_inputs)
    kwargs = dict(example_kwarg_inputs or {})
    graph, root, out = _record(func, args, kwargs)
    _strict_check(out, strict)
    gm = GraphModule(_root_module(root), graph, getattr(func, "__name__", "fn"))
    fn = ScriptFunction(gm, getattr(func, "__name__", "fn"))
    if check_trace and not kwargs:
        _check(func, fn, gm.code, check_inputs or [args], check_tolerance, graph)
    return fn


def trace_module(
    mod,
    inputs: dict[str, Any],
    optimize: Any = None,
    check_trace: bool = True,
    check_inputs: list[dict] | None = None,
    check_tolerance: float = 1e-5,
    strict: bool = True,
    _force_outplace: bool = False,
    _module_class: Any = None,
    _compilation_unit: Any = None,
    example_inputs_is_kwarg: bool = False,
    _store_inputs: bool = True,
    _kwargs: dict | None = None,
) -> ScriptModule:
    """Trace several methods of ``mod``: ``inputs`` maps method name -> example inputs."""
    from ember.nn import Module

    if not isinstance(mod, Module):
        raise AttributeError("expected ember.nn.Module as the first argument")
    if not isinstance(inputs, dict) or not inputs:
        raise AttributeError("expected a dictionary of (method_name, input) pairs")
    result = None
    name = type(mod).__name__
    for method, example in inputs.items():
        fn = getattr(type(mod), method, None)
        if not callable(fn):
            raise AttributeError(f"{name} has no method {method!r} to trace")
        args = () if example_inputs_is_kwarg else _as_tuple(example)
        kwargs = dict(_kwargs or {}) if example_inputs_is_kwarg else {}
        target = mod if method == "forward" else _MethodAsForward(mod, method)
        graph, root, out = _record(target, args, kwargs)
        _strict_check(out, strict)
        if method == "forward":
            result = _build(root, graph, name)
            traced = result
        else:
            traced = _build(root, graph, f"{name}_{method}", ScriptModule)
        if check_trace and not kwargs:
            checks = [c[method] for c in check_inputs if method in c] if check_inputs else [args]
            _check(target, traced, traced.code, checks, check_tolerance, graph)
        if method != "forward":
            if result is None:
                result = _build(_EmptyRoot(), _empty_graph(), name)
            result.add_method(method, traced)
    return result


class _MethodAsForward:
    """Lets the tracer run ``mod.<method>`` as if it were ``forward``."""

    def __new__(cls, mod, method):
        from ember.nn import Module

        sub = type(
            f"{type(mod).__name__}_{method}", (type(mod),), {"forward": getattr(type(mod), method)}
        )
        obj = Module.__new__(sub)
        obj.__dict__ = mod.__dict__  # same parameters, buffers and submodules
        return obj


class _EmptyRoot(dict):
    pass


def _empty_graph():
    from ember.fx import Graph

    g = Graph()
    g.output(None)
    return g
