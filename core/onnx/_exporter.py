"""``export``: trace with ember.fx, run the graph on the example inputs, lower nodes to ONNX.

The node-lowering loop and the subgraph helpers live in ``_lowering`` (re-exported here, so
``from ._exporter import _flatten, lower_subgraph`` keeps working).
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np

from . import OnnxExporterError, TrainingMode, UnsupportedOperatorError  # noqa: F401
from ._context import Ctx, Sym, _np_of, any_sym  # noqa: F401
from ._lowering import (  # noqa: F401  (re-exported: _program and _ops_control import them here)
    _dyn_of,
    _flatten,
    _is_tensor_tree,
    _lower,
    _module_path,
    _record,
    _unflatten,
    _wrap,
    lower_into,
    lower_subgraph,
    make_subgraph,
    value_info_any,
)
from ._tracer import _Root, _select_mode, make_tracer  # noqa: F401

DEFAULT_OPSET = 17
_MIN_OPSET, _MAX_OPSET = 11, 21
_CONVERT_FROM = 7  # opsets 7-10: written at 11 and converted down (onnx.version_converter)


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
    from ember.fx.proxy import TraceError

    opset = DEFAULT_OPSET if opset_version is None else int(opset_version)
    down = None
    if _CONVERT_FROM <= opset < _MIN_OPSET:
        # export at the lowest opset ember writes, then onnx's version converter steps down
        down, opset = opset, _MIN_OPSET
    if not _MIN_OPSET <= opset <= _MAX_OPSET:
        raise OnnxExporterError(
            f"opset_version {opset} is not supported: use {_CONVERT_FROM} to "
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
                try:
                    tracer = make_tracer()
                    traced = _Root.of(model, fn) if isinstance(model, ember.nn.Module) else model
                    graph = tracer.trace(traced, concrete_args=concrete or None)
                    root = traced if isinstance(model, ember.nn.Module) else tracer.root
                    gm = GraphModule(root, graph)
                except TraceError as e:
                    if "control flow" not in str(e) or kwargs:
                        raise
                    gm = _jit_fallback(model, args)
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
        down,
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


def _jit_fallback(model, args):
    """torch's exporter falls back to ``torch.jit.trace`` for data-dependent Python control
    flow: the graph follows the branches taken on the example inputs (TracerWarning says so);
    ``ember.cond`` exports both branches."""
    import ember

    if not isinstance(model, ember.nn.Module):
        model = _FnModule(model)
    return ember.jit.trace(model, tuple(args), check_trace=False)


class _FnModule:
    def __new__(cls, fn):
        import ember

        class Wrapped(ember.nn.Module):
            def forward(self, *a, **k):
                return fn(*a, **k)

        return Wrapped()


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
    down=None,
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
    if opset < 13:
        from ._opsets import drop_unused_constants

        drop_unused_constants(ctx)
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
    if down is not None:
        model = _convert_down(onnx, model, down)
    if f is not None:
        onnx.save(model, f)
    return model


def _convert_down(onnx, model, opset: int):
    """``model`` at ``opset`` (< 11) through onnx's version converter; when an op has no
    older form the model stays at opset 11 with a warning (as torch's exporter keeps its
    own opset when the conversion fails)."""
    import warnings

    from onnx import version_converter

    same = _relabel(onnx, model, opset)
    if same is not None:
        return same
    try:
        out = version_converter.convert_version(model, opset)
        onnx.checker.check_model(out)
        return out
    except Exception as e:  # the converter raises plain RuntimeErrors/ValueErrors
        warnings.warn(
            f"ONNX model could not be converted from opset {_MIN_OPSET} to opset {opset} "
            f"({str(e).splitlines()[0] if str(e) else type(e).__name__}); it is kept at "
            f"opset {_MIN_OPSET}",
            UserWarning,
            stacklevel=3,
        )
        return model


def _relabel(onnx, model, opset: int):
    """``model`` labelled ``opset`` when every node reads the same there (the converter has no
    adapter for Gemm 11 -> 9, whose only change made ``C`` optional); else None."""
    from onnx import defs

    for n in model.graph.node:
        if any(a.type in (a.GRAPH, a.GRAPHS) for a in n.attribute):
            return None
        try:
            old = defs.get_schema(n.op_type, opset, n.domain).since_version
            new = defs.get_schema(n.op_type, _MIN_OPSET, n.domain).since_version
        except Exception:  # (no schema at that opset: let the converter say so)
            return None
        if old != new and not (n.op_type == "Gemm" and len(n.input) == 3):
            return None
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for imp in out.opset_import:
        if imp.domain in ("", "ai.onnx"):
            imp.version = opset
    onnx.checker.check_model(out)
    return out
