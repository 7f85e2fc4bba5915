"""``ember.onnx``: export a Module to an ONNX model (``torch.onnx``'s API).

``import ember.onnx`` is cheap: the ``onnx`` package is imported only when :func:`export` runs.
The exporter traces the model into an ``ember.fx`` graph and lowers each node to ONNX operators
(see ``docs/onnx.md``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

__all__ = [
    "export",
    "is_in_onnx_export",
    "register_custom_op_symbolic",
    "unregister_custom_op_symbolic",
    "TrainingMode",
    "OperatorExportTypes",
    "OnnxExporterError",
    "UnsupportedOperatorError",
    "select_model_mode_for_export",
    "ONNXProgram",
    "errors",
    "producer_name",
    "producer_version",
]

#: The ``producer_name`` written into exported ONNX models.
producer_name = "ember"
#: The ``producer_version`` written into exported ONNX models.
producer_version = "0.1"


class TrainingMode(enum.IntEnum):
    """The mode a model is exported in (as ``torch.onnx.TrainingMode``)."""

    EVAL = 0
    PRESERVE = 1
    TRAINING = 2


class OperatorExportTypes(enum.IntEnum):
    """How operators are exported (only ``ONNX`` is produced; kept for API compatibility)."""

    ONNX = 0
    ONNX_ATEN = 1
    ONNX_ATEN_FALLBACK = 2
    ONNX_FALLTHROUGH = 3


class OnnxExporterError(RuntimeError):
    """Raised when a model cannot be exported."""


class UnsupportedOperatorError(OnnxExporterError):
    """An operator of the traced graph has no ONNX conversion."""


_in_export = False
# custom symbolics: "namespace::name" -> (fn, opset); looked up by the op's short name too
_custom_symbolics: dict[str, tuple[Callable, int]] = {}


def is_in_onnx_export() -> bool:
    """True while :func:`export` is tracing/running the model."""
    return _in_export


def register_custom_op_symbolic(
    symbolic_name: str, symbolic_fn: Callable, opset_version: int
) -> None:
    """Register ``symbolic_fn(g, *inputs, **kwargs)`` as the conversion of an op.

    ``symbolic_name`` is ``"namespace::op"`` (``"aten::relu"``, ``"mylib::op"``); the ``op``
    part is matched against the traced call's function or method name, so a registered
    symbolic replaces ember's built-in conversion of that name. ``g`` offers
    ``g.op("Relu", x, alpha_f=0.1)`` like torch's graph context; the inputs are value names.
    """
    if not isinstance(symbolic_name, str) or symbolic_name.count("::") != 1:
        raise ValueError(
            f"Failed to register operator {symbolic_name!r}. The symbolic name must "
            "match the format domain::name"
        )
    if not callable(symbolic_fn):
        raise TypeError(f"symbolic_fn must be callable, got {type(symbolic_fn).__name__}")
    _custom_symbolics[symbolic_name] = (symbolic_fn, int(opset_version))


def unregister_custom_op_symbolic(symbolic_name: str, opset_version: int) -> None:
    """Remove a symbolic added with :func:`register_custom_op_symbolic`."""
    _custom_symbolics.pop(symbolic_name, None)


def select_model_mode_for_export(model, mode: TrainingMode):
    """Context manager that puts ``model`` in the export mode and restores it after."""
    from ._exporter import _select_mode

    return _select_mode(model, mode)


# torch.onnx.export options that change nothing here (reports, optimizer passes, C++ ops)
_IGNORED_OPTIONS = {
    "custom_opsets",
    "export_modules_as_functions",
    "autograd_inlining",
    "dynamic_shapes",
    "report",
    "optimize",
    "verify",
    "profile",
    "dump_exported_program",
    "artifacts_dir",
    "fallback",
    "strict",
}


def _axes_of_dynamic_shapes(model, args, kwargs, shapes, input_names) -> dict:
    """torch.export-style ``dynamic_shapes`` (``{arg: {axis: Dim}}`` or a tuple in argument
    order; ``Dim``, a name, or ``Dim.AUTO``/``DYNAMIC`` per axis) -> ``dynamic_axes`` keyed
    by ONNX input name (``input_names`` where given, else the argument's name)."""
    import inspect

    import ember

    fn = model.forward if isinstance(model, ember.nn.Module) else model
    args = args if isinstance(args, tuple) else (args,)
    try:
        bound = inspect.signature(fn).bind(*args, **(kwargs or {})).arguments
    except TypeError as e:
        raise OnnxExporterError(f"the example args do not match forward's signature: {e}") from None
    tensors = [k for k, v in bound.items() if isinstance(v, ember.Tensor)]
    if isinstance(shapes, (tuple, list)):
        shapes = dict(zip(bound, shapes))
    if not isinstance(shapes, dict):
        raise OnnxExporterError(
            f"dynamic_shapes must be a dict or a tuple, got {type(shapes).__name__}"
        )
    out: dict = {}
    for arg, spec in shapes.items():
        if spec is None:
            continue
        if arg not in tensors:
            raise OnnxExporterError(
                f"dynamic_shapes names {arg!r}, which is not a tensor input of the model "
                f"(tensor inputs: {', '.join(tensors)})"
            )
        i = tensors.index(arg)
        name = input_names[i] if input_names and i < len(input_names) else arg
        if isinstance(spec, (tuple, list)):
            spec = dict(enumerate(spec))
        axes = {}
        for ax, d in spec.items():
            if d is None:
                continue
            dname = d if isinstance(d, str) else getattr(d, "__name__", None)
            if not isinstance(dname, str) or dname.startswith("Dim."):
                dname = f"{name}_dim_{int(ax)}"  # Dim.AUTO / Dim.DYNAMIC
            axes[int(ax)] = dname
        if axes:
            out[name] = axes
    return out


def export(
    model,
    args: Any,
    f=None,
    *,
    kwargs: dict | None = None,
    export_params: bool = True,
    verbose: bool | None = None,
    input_names: list[str] | None = None,
    output_names: list[str] | None = None,
    opset_version: int | None = None,
    dynamic_axes: dict | None = None,
    do_constant_folding: bool = True,
    training: TrainingMode = TrainingMode.EVAL,
    operator_export_type: OperatorExportTypes = OperatorExportTypes.ONNX,
    keep_initializers_as_inputs: bool = False,
    dynamo: bool = False,
    external_data: bool = False,
    **unused: Any,
):
    """Export ``model`` called on ``args`` to an ONNX file (``torch.onnx.export``).

    Args:
        model: an ``ember.nn.Module`` (or a function of tensors).
        args: a tensor or tuple of example inputs (a trailing dict is taken as keyword inputs).
        f: a path or a writable binary file; ``None`` returns the ``onnx.ModelProto`` only.
        input_names / output_names: names of the graph's inputs/outputs, in order.
        dynamic_axes: ``{name: {axis: "dim_name"}}`` or ``{name: [axis, ...]}`` for inputs and
            outputs whose sizes vary (batch, sequence length). torch.export's
            ``dynamic_shapes={"x": {0: Dim("batch")}}`` is accepted too (keyword).
        opset_version: the ONNX opset (default 17; 11 to 21 are accepted).
        export_params: store the weights as initializers (``False``: weights become inputs).
        training: ``TrainingMode.EVAL`` (default) puts the model in eval mode during export.
        dynamo: accepted for torch's API; ``True`` returns an :class:`ONNXProgram` wrapping
            the same model (ember has one exporter, on ``ember.fx``).

    Returns:
        the ``onnx.ModelProto`` written (an ``ONNXProgram`` when ``dynamo=True``).
    """
    from ._exporter import export as _export
    from ._program import ONNXProgram

    if operator_export_type != OperatorExportTypes.ONNX:
        raise OnnxExporterError(
            f"operator_export_type={operator_export_type!r} is not "
            "supported: ember exports plain ONNX operators only"
        )
    unknown = set(unused) - _IGNORED_OPTIONS
    if unknown:
        raise TypeError(f"export() got unexpected keyword arguments {sorted(unknown)}")
    if unused.get("dynamic_shapes") is not None:
        if dynamic_axes is not None:
            raise OnnxExporterError("give dynamic_shapes or dynamic_axes, not both")
        dynamic_axes = _axes_of_dynamic_shapes(
            model, args, kwargs, unused["dynamic_shapes"], input_names
        )
    proto = _export(
        model,
        args,
        f,
        kwargs=kwargs,
        export_params=export_params,
        input_names=input_names,
        output_names=output_names,
        opset_version=opset_version,
        dynamic_axes=dynamic_axes,
        do_constant_folding=do_constant_folding,
        training=training,
        keep_initializers_as_inputs=keep_initializers_as_inputs,
        verbose=verbose,
    )
    return ONNXProgram(proto) if dynamo else proto


def __getattr__(name: str):
    if name == "ONNXProgram":
        from ._program import ONNXProgram

        return ONNXProgram
    if name == "errors":
        import importlib

        return importlib.import_module("ember.onnx.errors")
    raise AttributeError(f"module 'ember.onnx' has no attribute {name!r}")
