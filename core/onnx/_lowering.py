"""Lowering an fx graph to ONNX nodes: the node loop, subgraphs (cond/while bodies) and the
flatten/record helpers that export shares (re-exported by ``_exporter``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import OnnxExporterError, UnsupportedOperatorError
from ._context import Sym, _np_of, any_sym


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


def _record(gm, values: list) -> dict:
    from ember.fx import Interpreter

    interp = Interpreter(gm, garbage_collect_values=False)
    interp.extra_traceback = False
    interp.run(*values)
    return interp.env


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
