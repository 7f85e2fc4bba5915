"""``export``: trace with ember.fx, run the graph on the example inputs, lower nodes to ONNX."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from . import OnnxExporterError, TrainingMode, UnsupportedOperatorError
from ._context import Ctx, Sym, _np_of, any_sym
from ._tracer import _Root, _select_mode, make_tracer

DEFAULT_OPSET = 17
_MIN_OPSET, _MAX_OPSET = 14, 21


def _split_args(args: Any, kwargs: dict | None) -> tuple[tuple, dict]:
    from ember import Tensor

    if isinstance(args, Tensor) or not isinstance(args, (tuple, list)):
        args = (args,)
    args = tuple(args)
    kwargs = dict(kwargs or {})
    if args and isinstance(args[-1], dict):  # torch: a trailing dict holds keyword inputs
        kwargs = {**args[-1], **kwargs}
        args = args[:-1]
    return args, kwargs


def _is_tensor_tree(v: Any) -> bool:
    from ember import Tensor

    if isinstance(v, Tensor):
        return True
    return isinstance(v, (tuple, list)) and len(v) > 0 and all(_is_tensor_tree(e) for e in v)


def _flatten(v: Any) -> list:
    if isinstance(v, (tuple, list)):
        return [x for e in v for x in _flatten(e)]
    if isinstance(v, dict):  # dict outputs: their values, in order
        return [x for e in v.values() for x in _flatten(e)]
    return [v]


def _unflatten(like: Any, it) -> Any:
    if isinstance(like, (tuple, list)):
        return tuple(_unflatten(e, it) for e in like)
    return next(it)


def _resize(arr: np.ndarray, axis: int, size: int) -> np.ndarray:
    """``arr`` with ``axis`` grown (edge values repeated) or cut to ``size``."""
    idx = np.minimum(np.arange(size), arr.shape[axis] - 1)
    return np.take(arr, idx, axis=axis)


def _axes_of(spec: Any, name: str) -> dict[int, str]:
    if spec is None:
        return {}
    if isinstance(spec, dict):
        return {int(k): str(v) for k, v in spec.items()}
    if isinstance(spec, (list, tuple)):
        return {int(a): f"{name}_dynamic_axes_{i + 1}" for i, a in enumerate(spec)}
    raise OnnxExporterError(
        f"dynamic_axes[{name!r}] must be a dict {{axis: name}} or a list of "
        f"axes, got {type(spec).__name__}"
    )


def _record(gm, values: list) -> dict:
    from ember.fx import Interpreter

    interp = Interpreter(gm, garbage_collect_values=False)
    interp.extra_traceback = False
    interp.run(*values)
    return interp.env


def export(
    model,
    args,
    f,
    *,
    kwargs=None,
    export_params=True,
    input_names=None,
    output_names=None,
    opset_version=None,
    dynamic_axes=None,
    do_constant_folding=True,
    training=TrainingMode.EVAL,
    keep_initializers_as_inputs=False,
    verbose=None,
):
    import onnx

    import ember
    import ember.onnx as eonnx
    from ember.fx import GraphModule

    opset = DEFAULT_OPSET if opset_version is None else int(opset_version)
    if not _MIN_OPSET <= opset <= _MAX_OPSET:
        raise OnnxExporterError(
            f"opset_version {opset} is not supported: use {_MIN_OPSET} to "
            f"{_MAX_OPSET} (default {DEFAULT_OPSET})"
        )
    if isinstance(dynamic_axes, (list, tuple)) or (
        dynamic_axes is not None and not isinstance(dynamic_axes, dict)
    ):
        raise OnnxExporterError("dynamic_axes must be a dict {input_or_output_name: axes}")
    args, kwargs = _split_args(args, kwargs)

    eonnx._in_export = True
    try:
        with _select_mode(model, TrainingMode(training)), ember.no_grad():
            # bind the example inputs to forward's parameters; non-tensors are baked in
            fn = model.forward if isinstance(model, ember.nn.Module) else model
            try:
                bound = inspect.signature(fn).bind(*args, **kwargs)
            except TypeError as e:
                raise OnnxExporterError(
                    f"the example args do not match forward's signature: {e}"
                ) from None
            bound.apply_defaults()  # unpassed arguments are baked in with their defaults
            concrete = {k: v for k, v in bound.arguments.items() if not _is_tensor_tree(v)}
            if _is_scripted(model):
                gm = model  # ember.jit.script's graph: control flow as ember.cond nodes
            else:
                tracer = make_tracer()
                traced = _Root.of(model, fn) if isinstance(model, ember.nn.Module) else model
                graph = tracer.trace(traced, concrete_args=concrete or None)
                root = traced if isinstance(model, ember.nn.Module) else tracer.root
                gm = GraphModule(root, graph)
            graph = gm.graph
            placeholders = [n for n in graph.nodes if n.op == "placeholder"]
            ph_values = []
            for n in placeholders:
                name = n.target.lstrip("*")
                if name in bound.arguments:
                    ph_values.append(bound.arguments[name])
                elif n.args:
                    ph_values.append(n.args[0])
                else:
                    raise OnnxExporterError(f"no example value for forward's argument {name!r}")
            env_a = _record(gm, ph_values)
            # names of the flattened tensor inputs
            flat_inputs = [
                (n, i, t)
                for n, v in zip(placeholders, ph_values)
                if _is_tensor_tree(v)
                for i, t in enumerate(_flatten(v))
            ]
            names = list(input_names or [])
            if len(names) > len(flat_inputs):
                raise OnnxExporterError(
                    f"{len(names)} input_names given for {len(flat_inputs)} tensor inputs"
                )
            for k in range(len(names), len(flat_inputs)):
                n, i, _ = flat_inputs[k]
                names.append(
                    n.target.lstrip("*")
                    + (f"_{i}" if i or len(_flatten(ph_values[placeholders.index(n)])) > 1 else "")
                )
            dyn = dict(dynamic_axes or {})
            env_b = None
            if any(_axes_of(dyn.get(nm), nm) for nm in names):
                env_b = _second_run(gm, placeholders, ph_values, flat_inputs, names, dyn)

            ctx = Ctx(opset)
            for nm in names:
                ctx.reserve(nm)
            out_struct = _lower(
                ctx, gm, placeholders, ph_values, names, env_a, env_b, export_params
            )
    finally:
        eonnx._in_export = False

    return _build_model(
        onnx,
        ctx,
        names,
        [t for _, _, t in flat_inputs],
        dyn,
        out_struct,
        output_names,
        f,
        opset,
        export_params,
        keep_initializers_as_inputs,
    )


def _second_run(gm, placeholders, ph_values, flat_inputs, names, dyn) -> dict:
    """Run again with every dynamic axis resized, to learn which sizes vary."""
    import ember

    sizes: dict[str, int] = {}
    for (_, _, t), nm in zip(flat_inputs, names):
        for ax, dname in _axes_of(dyn.get(nm), nm).items():
            if not -t.dim() <= ax < t.dim():
                raise OnnxExporterError(
                    f"dynamic_axes[{nm!r}] names axis {ax} but the input has {t.dim()} dimensions"
                )
            sizes.setdefault(dname, t.shape[ax])
    last_err = None
    for delta in (1, -1, 2):
        new = {d: s + delta for d, s in sizes.items()}
        if min(new.values()) < 1:
            continue
        flat = []
        for (_, _, t), nm in zip(flat_inputs, names):
            arr = _np_of(t)
            for ax, dname in _axes_of(dyn.get(nm), nm).items():
                arr = _resize(arr, ax % arr.ndim, new[dname])
            flat.append(ember.tensor(arr, dtype=t.dtype, device=t.device))
        it = iter(flat)
        vals = [_unflatten(v, it) if _is_tensor_tree(v) else v for v in ph_values]
        try:
            return _record(gm, vals)
        except Exception as e:  # noqa: BLE001 - try another size
            last_err = e
    raise OnnxExporterError(
        "could not run the model with the dynamic axes resized (needed to "
        f"find which sizes vary): {last_err}"
    )


def _is_scripted(model) -> bool:
    """A GraphModule holding control-flow nodes (what ember.jit.script makes)."""
    from ember.fx import GraphModule
    from ember.fx._names import target_name

    if not isinstance(model, GraphModule):
        return False
    return any(
        n.op == "call_function" and target_name(n.target) in ("ember.cond", "ember.while_loop")
        for n in model.graph.nodes
    )


def lower_into(ctx, gm, operands: list) -> Any:
    """Lower the graph of ``gm`` into ``ctx.nodes`` with its inputs bound to ``operands``
    (values of the enclosing graph); returns its output values."""
    ex_ops = [o.ex if isinstance(o, Sym) else o for o in operands]
    env_a = _record(gm, ex_ops)
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    saved_ex, saved_path = ctx.ex, ctx.module_path
    try:
        return _lower(ctx, gm, placeholders, ex_ops, [], env_a, None, True, prebound=operands)
    finally:
        ctx.ex, ctx.module_path = saved_ex, saved_path


def value_info_any(name: str, v: Any):
    """A value_info of ``v``'s dtype and rank with unknown sizes (for subgraph boundaries)."""
    import onnx

    ex = _np_of(v.ex if isinstance(v, Sym) else v)
    elem = onnx.helper.np_dtype_to_tensor_dtype(
        np.dtype(np.float32) if ex.dtype == np.float64 else ex.dtype
    )
    return onnx.helper.make_tensor_value_info(name, elem, [None] * ex.ndim)


def make_subgraph(ctx, name: str, inputs_vi: list, outputs: list):
    """Close the nodes collected since ``ctx.nodes`` was swapped into a GraphProto whose
    outputs are Identity copies of ``outputs``."""
    import onnx

    outs_vi = []
    for v in outputs:
        nm = ctx.fresh(f"{name}_out")
        ctx.nodes.append(
            onnx.helper.make_node(
                "Identity", [ctx.name_of(v)], [nm], name=ctx.fresh("n_subgraph_out")
            )
        )
        outs_vi.append(value_info_any(nm, v))
    return onnx.helper.make_graph(ctx.nodes, ctx.fresh(name), inputs_vi, outs_vi)


def lower_subgraph(ctx, gm, operands: list, name: str):
    """Lower a branch GraphModule into an ONNX GraphProto reading ``operands`` from the outer
    scope; returns (graph, output values)."""
    saved = ctx.nodes
    ctx.nodes = []
    try:
        out = lower_into(ctx, gm, operands)
        graph = make_subgraph(ctx, name, [], _flatten(out))
    finally:
        ctx.nodes = saved
    return graph, out


def _dyn_of(a: Any, b: Any) -> Any:
    sa, sb = getattr(a, "shape", None), getattr(b, "shape", None)
    if sa is not None and sb is not None and len(sa) == len(sb):
        return frozenset(i for i, (x, y) in enumerate(zip(sa, sb)) if x != y)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a != b
    return frozenset() if sa is not None else False


def _wrap(out: Any, ex_a: Any, ex_b: Any) -> Any:
    """Handler results: ONNX names become Syms carrying the example value."""
    if isinstance(out, str):
        return Sym(out, ex_a, _dyn_of(ex_a, ex_b))
    if isinstance(out, (tuple, list)) and isinstance(ex_a, (tuple, list)) and len(out) == len(ex_a):
        exb = (
            ex_b
            if isinstance(ex_b, (tuple, list)) and len(ex_b) == len(ex_a)
            else [None] * len(ex_a)
        )
        return type(out)(_wrap(o, a, b) for o, a, b in zip(out, ex_a, exb))
    return out


def _module_path(node) -> str:
    if node.op == "call_module":
        path = str(node.target)
    else:
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
    # strip the export wrapper's "m" (see _Root)
    path = "" if path == "m" else path.removeprefix("m.")
    return path or "<root>"


def _lower(
    ctx,
    gm,
    placeholders,
    ph_values,
    names,
    env_a,
    env_b,
    export_params,
    prebound: list | None = None,
):
    from ember import Tensor
    from ember.fx.node import map_arg

    from ._ops_quant import qdq_handler
    from ._registry import find_function, find_method, find_module

    env: dict = {}
    it = iter(names)
    tensor_names: dict[int, str] = {}
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if prebound is not None:  # a subgraph: its inputs are values of the outer graph
                env[node] = prebound[placeholders.index(node)]
                continue
            v = ph_values[placeholders.index(node)]
            if _is_tensor_tree(v):
                ex_b = env_b[node] if env_b is not None else None
                flat_b = _flatten(ex_b) if ex_b is not None else [None] * len(_flatten(v))
                syms = [Sym(next(it), t, _dyn_of(t, tb)) for t, tb in zip(_flatten(v), flat_b)]
                env[node] = _unflatten(v, iter(syms))
            else:
                env[node] = v
            continue
        if node.op == "get_attr":
            val = env_a[node]
            env[node] = val
            from ember import Tensor

            if isinstance(val, Tensor) and id(val) not in tensor_names:
                tensor_names[id(val)] = node.target
                ctx.tensor_hints[id(val)] = node.target.removeprefix("m.")
            continue
        if node.op == "output":
            return map_arg(node.args[0], lambda n: env[n])
        args = map_arg(node.args, lambda n: env[n])
        kwargs = map_arg(node.kwargs, lambda n: env[n])
        if not any_sym(args) and not any_sym(kwargs):
            env[node] = env_a[node]  # constant folding: the value is known at export time
            continue
        ctx.module_path = _module_path(node)
        if node.op != "call_module" and args and isinstance(args[0], Tensor):
            # a constant meeting run-time values (buffer[:, :T]): handlers see it as a value
            args = (Sym(ctx.name_of(args[0]), args[0], frozenset()),) + tuple(args[1:])
        ctx.ex = env_a[node]
        if node.op == "call_module":
            mod = gm.get_submodule(node.target)
            handler, label = find_module(mod), type(mod).__name__
            call_args = (ctx, mod, *args)
        else:
            if node.op == "call_function":
                handler, label = find_function(node.target)
            else:
                handler, label = find_method(node.target)
            call_args = (ctx, *args)
        where = f"in module '{ctx.module_path}', node {node.name}"
        handler = qdq_handler(handler, args, kwargs)  # quantized values: QDQ around float ops
        if handler is None:
            raise UnsupportedOperatorError(
                f"Exporting the operator '{label}' to ONNX opset version {ctx.opset} is not "
                f"supported ({where}). Register a conversion with "
                "ember.onnx.register_custom_op_symbolic."
            )
        try:
            out = handler(*call_args, **kwargs)
        except UnsupportedOperatorError:
            raise
        except OnnxExporterError as e:
            if "in module '" in str(e):  # already located (a nested subgraph)
                raise
            raise type(e)(f"{label}: {e} ({where})") from None
        except Exception as e:  # noqa: BLE001 - name the op and module for any failure
            raise OnnxExporterError(
                f"converting '{label}' failed ({where}): {type(e).__name__}: {e}"
            ) from e
        env[node] = _wrap(out, env_a[node], env_b[node] if env_b is not None else None)
    raise OnnxExporterError("the traced graph has no output")


def _value_info(onnx, name: str, ex: Any, dims: dict[int, str], dyn: Any):
    arr = _np_of(ex)
    elem = onnx.helper.np_dtype_to_tensor_dtype(
        np.dtype(np.float32) if arr.dtype == np.float64 else arr.dtype
    )
    shape = []
    for i, s in enumerate(arr.shape):
        if i in dims:
            shape.append(dims[i])
        elif isinstance(dyn, frozenset) and i in dyn:
            shape.append(None)
        else:
            shape.append(int(s))
    return onnx.helper.make_tensor_value_info(name, elem, shape)


def _build_model(
    onnx,
    ctx: Ctx,
    names,
    inputs,
    dyn,
    out_struct,
    output_names,
    f,
    opset,
    export_params=True,
    keep_initializers_as_inputs=False,
):
    helper = onnx.helper
    inputs_vi = [
        _value_info(onnx, nm, t, _axes_of(dyn.get(nm), nm), None) for nm, t in zip(names, inputs)
    ]
    outs = _flatten(out_struct)
    onames = list(output_names or [])
    if len(onames) > len(outs):
        raise OnnxExporterError(f"{len(onames)} output_names given for {len(outs)} outputs")
    onames += [f"output_{i}" if len(outs) > 1 else "output" for i in range(len(onames), len(outs))]
    unknown = set(dyn) - set(names) - set(onames)
    if unknown:
        raise OnnxExporterError(
            f"dynamic_axes names {sorted(unknown)} are neither inputs {names} nor outputs {onames}"
        )
    outputs_vi = []
    for v, nm in zip(outs, onames):
        if v is None or isinstance(v, (str, bytes)):
            raise OnnxExporterError(f"output {nm!r} is not a tensor ({v!r})")
        ctx.reserve(nm)
        src = ctx.name_of(v)
        ctx.nodes.append(helper.make_node("Identity", [src], [nm], name=ctx.fresh("n_out")))
        ex = v.ex if isinstance(v, Sym) else v
        outputs_vi.append(
            _value_info(
                onnx, nm, ex, _axes_of(dyn.get(nm), nm), v.dyn if isinstance(v, Sym) else None
            )
        )
    inits = ctx.initializers
    if not export_params or keep_initializers_as_inputs:
        # weights become graph inputs (without values unless kept as initializers too)
        params = set(ctx.param_names)
        for t in inits:
            if t.name in params:
                inputs_vi.append(helper.make_tensor_value_info(t.name, t.data_type, t.dims))
        if not export_params:
            inits = [t for t in inits if t.name not in params]
    graph = helper.make_graph(ctx.nodes, "ember_graph", inputs_vi, outputs_vi, initializer=inits)
    model = helper.make_model(
        graph, producer_name="ember", opset_imports=[helper.make_opsetid("", opset)]
    )
    model.ir_version = min(model.ir_version, 9 if opset <= 20 else 10)
    onnx.checker.check_model(model)
    if f is not None:
        onnx.save(model, f)
    return model
