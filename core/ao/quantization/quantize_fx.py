"""FX graph mode quantization, torch.ao.quantization.quantize_fx's API: ``prepare_fx``,
``prepare_qat_fx``, ``convert_fx``, ``fuse_fx``.

The model is traced with ``ember.fx.symbolic_trace`` (no QuantStub / DeQuantStub / FloatFunctional
needed), conv-bn(-relu) / conv-relu / linear-relu chains are fused, observers are inserted at
the inputs and outputs of quantizable nodes, and ``convert_fx`` produces a GraphModule that
quantizes its input, runs int8 modules and quantized add / cat / pooling, and dequantizes at
the output. See docs/quantization.md, "FX graph mode".
"""

from __future__ import annotations

import copy
from typing import Any

from ... import nn
from ...fx import GraphModule, symbolic_trace
from .fx import convert as _convert
from .fx import fuse_graph as _fuse_graph
from .fx import prepare as _prepare
from .qconfig import QConfigMapping

__all__ = ["prepare_fx", "prepare_qat_fx", "convert_fx", "fuse_fx"]


def _unsupported(name: str, value: Any) -> None:
    if value is not None:
        raise NotImplementedError(
            f"{name} is not supported by ember's FX graph mode "
            f"quantization yet (got {type(value).__name__}); pass None"
        )


def fuse_fx(model: nn.Module, fuse_custom_config=None, backend_config=None) -> GraphModule:
    """Trace ``model`` and fuse conv-bn(-relu), conv-relu, linear-relu and linear-bn chains
    (batch norms folded; the model must be in eval mode)."""
    _unsupported("fuse_custom_config", fuse_custom_config)
    _unsupported("backend_config", backend_config)
    if not isinstance(model, nn.Module):
        raise TypeError(f"fuse_fx: model must be an ember.nn.Module, got {type(model).__name__}")
    gm = model if isinstance(model, GraphModule) else symbolic_trace(copy.deepcopy(model))
    return _fuse_graph(gm, is_qat=False)


def prepare_fx(
    model: nn.Module,
    qconfig_mapping: QConfigMapping | dict[str, Any],
    example_inputs: tuple[Any, ...],
    prepare_custom_config=None,
    _equalization_config=None,
    backend_config=None,
) -> GraphModule:
    """Prepare a model for post-training static quantization.

    Args:
        model: a float model in eval mode (not modified; a traced copy is returned).
        qconfig_mapping: which qconfig applies where (global / object type / module name);
            a ``None`` qconfig keeps that part float.
        example_inputs: a tuple of positional inputs for the model.

    Returns:
        a GraphModule with ``activation_post_process_N`` observers; run calibration data
        through it, then call :func:`convert_fx`.
    """
    _unsupported("prepare_custom_config", prepare_custom_config)
    _unsupported("_equalization_config", _equalization_config)
    _unsupported("backend_config", backend_config)
    return _prepare(model, qconfig_mapping, False, example_inputs)


def prepare_qat_fx(
    model: nn.Module,
    qconfig_mapping: QConfigMapping | dict[str, Any],
    example_inputs: tuple[Any, ...],
    prepare_custom_config=None,
    backend_config=None,
) -> GraphModule:
    """Prepare a model (in train mode) for quantization-aware training: fused modules keep
    their batch norms (``ConvBn*``), weighted modules become QAT modules with weight fake
    quantization, and activations get fake quantizers from the qconfig."""
    _unsupported("prepare_custom_config", prepare_custom_config)
    _unsupported("backend_config", backend_config)
    return _prepare(model, qconfig_mapping, True, example_inputs)


def convert_fx(
    graph_module: GraphModule,
    convert_custom_config=None,
    _remove_qconfig: bool = True,
    qconfig_mapping=None,
    backend_config=None,
) -> GraphModule:
    """Turn a calibrated (or QAT-trained) prepared GraphModule into a quantized one: input
    ``quantize_per_tensor``, int8 modules, quantized add / cat / pools, output ``dequantize``.
    The prepared module is not modified."""
    _unsupported("convert_custom_config", convert_custom_config)
    _unsupported("qconfig_mapping", qconfig_mapping)
    _unsupported("backend_config", backend_config)
    return _convert(graph_module)
