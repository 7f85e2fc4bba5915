"""``export()``: capture a Module on example inputs as an :class:`ExportedProgram`."""

from __future__ import annotations

from typing import Any

from ember.fx import GraphModule
from ember.fx.node import Node, map_aggregate

from ._recorder import RecordingTracer
from .dynamic_shapes import InputGuards, normalize_dynamic_shapes
from .exported_program import ExportedProgram
from .graph_signature import (
    ConstantArgument,
    ExportGraphSignature,
    InputKind,
    InputSpec,
    OutputKind,
    OutputSpec,
    TensorArgument,
)

__all__ = ["export", "capture"]


def capture(tracer: RecordingTracer, model, args: tuple, kwargs: dict):
    """Trace ``model`` with ``tracer``; returns ``(graph, root, output)`` with dead nodes
    removed and the tensor constants made during forward moved off the user's model."""
    from ember import compiler, no_grad

    root_before = set(vars(model)) if hasattr(model, "__dict__") else set()
    compiler._exporting[0] += 1  # ember.compiler.is_exporting() / is_compiling() answer True
    try:
        with no_grad():
            graph, out = tracer.trace_with_inputs(model, args, kwargs)
    finally:
        compiler._exporting[0] -= 1
    graph.eliminate_dead_code()
    root = tracer.root
    if root is model or (  # (or a view sharing its state: recorder._named_forward)
        hasattr(root, "__dict__") and hasattr(model, "__dict__") and vars(root) is vars(model)
    ):  # fx keeps forward-made tensors on the root: keep the model clean
        from ember.nn import Module

        holder = Module()
        for name in tracer.constant_names:
            if name not in root_before and name in vars(model):
                setattr(holder, name, vars(model).pop(name))
        root = _Overlay(model, holder)
    return graph, root, out


class _Overlay:
    """Reads dotted attributes from ``extra`` first, then ``base`` (for GraphModule copying)."""

    def __init__(self, base, extra) -> None:
        self.base, self.extra = base, extra


def _read(root, path: str):
    from ._recorder import fetch_attr

    if isinstance(root, _Overlay):
        if path in vars(root.extra):
            return vars(root.extra)[path]
        root = root.base
    return fetch_attr(root, path)


def export(
    mod,
    args: tuple,
    kwargs: dict | None = None,
    *,
    dynamic_shapes: Any = None,
    strict: bool = False,
    preserve_module_call_signature: tuple = (),
) -> ExportedProgram:
    """Capture ``mod`` run on ``args``/``kwargs`` as an :class:`ExportedProgram`.

    Args:
        mod: the ``ember.nn.Module`` to export.
        args: example positional inputs (a tuple).
        kwargs: example keyword inputs.
        dynamic_shapes: ``{input name: {dim: Dim}}`` (or a tuple in input order) marking
            dimensions that may vary; every other dimension is fixed to its example size.
        strict: accepted for torch's signature; ember always captures by running the model
            on its inputs (the same graph either way).

    Raises:
        ExportError: when the program's control flow depends on input data or a dynamic size
            is turned into a Python number, naming the line.
    """
    from ember import Tensor
    from ember.nn import Module

    if not isinstance(mod, Module):
        raise ValueError(f"Expected `mod` to be an instance of `ember.nn.Module`, got {type(mod)}.")
    if not isinstance(args, tuple):
        raise ValueError(
            f"Expecting `args` to be a tuple of example positional inputs, got {type(args)}"
        )
    kwargs = dict(kwargs or {})
    dims = normalize_dynamic_shapes(type(mod).forward, args, kwargs, dynamic_shapes)
    tracer = RecordingTracer(
        "export", {k: {i: d.__name__ for i, d in v.items()} for k, v in dims.items()}
    )
    graph, root, _ = capture(tracer, mod, args, kwargs)

    # user inputs: the tensor placeholders; Python values were baked in
    user_nodes, user_values = [], []
    all_inputs, baked = [], {}  # every input of forward, and the Python values baked in
    for n in list(graph.nodes):
        if n.op != "placeholder":
            continue
        all_inputs.append(n.target)
        if n not in tracer.values and n.target in tracer._example:
            baked[n.target] = tracer._example[n.target]
        if n in tracer.values:
            user_nodes.append(n)
            user_values.append(tracer.values[n])
        elif not n.users:
            graph.erase_node(n)

    # lift parameters, buffers and constants to placeholders ahead of the user inputs
    params = {id(p): k for k, p in mod.named_parameters()}
    buffers = {}
    for mname, m in mod.named_modules():
        for bname, b in m._buffers.items():
            if b is not None:
                path = f"{mname}.{bname}" if mname else bname
                buffers[path] = bname not in m._non_persistent_buffers_set
    specs: dict[str, InputSpec] = {}
    lifted: dict[str, Node] = {}
    state_dict: dict[str, Any] = {}
    constants: dict[str, Any] = {}
    first = user_nodes[0] if user_nodes else next(n for n in graph.nodes if n.op == "output")
    order = {InputKind.PARAMETER: 0, InputKind.BUFFER: 1, InputKind.CONSTANT_TENSOR: 2}
    gets = sorted(
        [n for n in graph.nodes if n.op == "get_attr"],
        key=lambda n: order[_kind(n.target, _read(root, n.target), params, buffers)],
    )
    for n in gets:
        value = _read(root, n.target)
        if not isinstance(value, Tensor):
            raise ValueError(
                f"export: attribute {n.target!r} is a {type(value).__name__}, not a tensor"
            )
        if n.target not in lifted:
            kind = _kind(n.target, value, params, buffers)
            prefix = {InputKind.PARAMETER: "p_", InputKind.BUFFER: "b_"}.get(kind, "c_")
            with graph.inserting_before(first):
                ph = graph.placeholder(prefix + n.target.replace(".", "_").lstrip("_"))
            ph.meta = dict(n.meta)
            lifted[n.target] = ph
            persistent = buffers[n.target] if kind is InputKind.BUFFER else None
            specs[n.target] = InputSpec(kind, TensorArgument(ph.name), n.target, persistent)
            if kind is InputKind.PARAMETER or persistent:
                state_dict[n.target] = value
            else:
                constants[n.target] = value
        n.replace_all_uses_with(lifted[n.target])
        graph.erase_node(n)
    input_specs = list(specs.values()) + [
        InputSpec(InputKind.USER_INPUT, TensorArgument(n.name), None) for n in user_nodes
    ]

    out_node = next(n for n in graph.nodes if n.op == "output")
    output_specs = []

    def spec(a):
        if isinstance(a, Node):
            output_specs.append(OutputSpec(OutputKind.USER_OUTPUT, TensorArgument(a.name)))
        elif a is None or isinstance(a, (int, float, bool, str)):
            output_specs.append(OutputSpec(OutputKind.USER_OUTPUT, ConstantArgument("", a)))
        return a

    map_aggregate(out_node.args[0], spec)
    graph.lint()
    gm = GraphModule({}, graph, type(mod).__name__)
    guards = InputGuards.build([n.target for n in user_nodes], user_values, dims)
    ep = ExportedProgram(
        gm,
        ExportGraphSignature(input_specs, output_specs),
        state_dict,
        constants,
        guards,
        (tuple(args), kwargs),
    )
    ep._baked_inputs = (all_inputs, baked)  # ep.module() takes them again (and checks them)
    return ep


def _kind(target: str, value, params: dict, buffers: dict) -> InputKind:
    if id(value) in params:
        return InputKind.PARAMETER
    if target in buffers:
        return InputKind.BUFFER
    return InputKind.CONSTANT_TENSOR
