"""The FX numeric suite (``torch.ao.ns._numeric_suite_fx``): compare a float (or prepared)
model with the model quantized from it, layer by layer.

- :func:`extract_weights`: each layer's weights in both models;
- :func:`add_loggers` / :func:`extract_logger_info`: each layer's output (and, optionally,
  inputs) in both models on the same data;
- :func:`add_shadow_loggers` / :func:`extract_shadow_logger_info`: model b with a float copy
  of each of model a's layers fed b's own inputs, so each layer's error is seen alone;
- :func:`extend_logger_results_with_comparison`: add a comparison (``ember.ao.ns.fx.utils``:
  SQNR, normalized L2 error, cosine similarity) to every entry.

Results have torch's shape, ``{layer: {"weight" | "node_output" | "node_input": {model name:
[entry]}}}``, each entry a dict with ``values`` (the tensors) and the node it came from
(``ref_node_name``, ``prev_node_name``, their target types, ``fqn``, ``index_of_arg``,
``index_within_arg``). Layers are paired as ``fx.graph_matcher`` describes; ember names a
layer after its op node in each model, where torch names model a's after the observer that
follows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ... import nn
from ...fx import GraphModule, Tracer
from .fx._loggers import OutputComparisonLogger, OutputLogger
from .fx.graph_matcher import GraphMatchingException, get_matching_subgraph_pairs
from .fx.graph_passes import add_loggers_to_model, create_a_shadows_b
from .fx.ns_types import NSResultsType, NSSingleResultValuesType
from .fx.weight_utils import extract_weight_from_node, get_fqn, get_target_type_str

__all__ = [
    "OutputLogger",
    "OutputComparisonLogger",
    "NSTracer",
    "GraphMatchingException",
    "extract_weights",
    "add_loggers",
    "extract_logger_info",
    "add_shadow_loggers",
    "extract_shadow_logger_info",
    "extend_logger_results_with_comparison",
    "loggers_set_enabled",
    "loggers_set_save_activations",
]


class NSTracer(Tracer):
    """A tracer that keeps observers, fake quantizers and loggers as leaf modules."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        from ..quantization.fake_quantize import FakeQuantizeBase
        from ..quantization.observer import ObserverBase

        if isinstance(m, (ObserverBase, FakeQuantizeBase, OutputLogger)):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def _graph_module(model: nn.Module, which: str) -> GraphModule:
    if isinstance(model, GraphModule):
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model {which} must be an ember.nn.Module, got {type(model).__name__}")
    return GraphModule(model, NSTracer().trace(model), type(model).__name__)


def _no_custom(**kwargs: Any) -> None:
    for k, v in kwargs.items():
        if v is not None:
            raise NotImplementedError(
                f"{k} is not supported by ember's numeric suite (layers are related by op "
                f"family; see ember.ao.ns.fx.graph_matcher); pass None"
            )


def extract_weights(
    model_name_a: str,
    model_a: nn.Module,
    model_name_b: str,
    model_b: nn.Module,
    base_name_to_sets_of_related_ops: dict | None = None,
    unmatchable_types_map: dict | None = None,
    op_to_type_to_weight_extraction_fn: dict | None = None,
) -> NSResultsType:
    """The weights of each matched layer of ``model_a`` and ``model_b`` (conv, linear,
    recurrent layers; quantized weights stay quantized), keyed by model b's node names.

    Example::

        >>> results = extract_weights("fp32", prepared, "int8", quantized)
        >>> extend_logger_results_with_comparison(results, "fp32", "int8", compute_sqnr, "sqnr")
        >>> results["conv"]["weight"]["int8"][0]["sqnr"]
    """
    _no_custom(
        base_name_to_sets_of_related_ops=base_name_to_sets_of_related_ops,
        unmatchable_types_map=unmatchable_types_map,
        op_to_type_to_weight_extraction_fn=op_to_type_to_weight_extraction_fn,
    )
    gm_a, gm_b = _graph_module(model_a, "a"), _graph_module(model_b, "b")
    results: NSResultsType = {}
    for layer, (sub_a, sub_b) in get_matching_subgraph_pairs(gm_a, gm_b).items():
        entries = {}
        for name, gm, sub in ((model_name_a, gm_a, sub_a), (model_name_b, gm_b, sub_b)):
            node = sub.base_op_node
            values = extract_weight_from_node(gm, node)
            if values is None:
                break
            target = get_target_type_str(gm, node)
            entries[name] = [
                {
                    "type": NSSingleResultValuesType.WEIGHT.value,
                    "values": values,
                    "prev_node_name": node.name,
                    "prev_node_target_type": target,
                    "ref_node_name": node.name,
                    "ref_node_target_type": target,
                    "index_within_arg": 0,
                    "index_of_arg": 0,
                    "fqn": get_fqn(gm, node),
                }
            ]
        else:
            results[layer] = {NSSingleResultValuesType.WEIGHT.value: entries}
    return results


def add_loggers(
    name_a: str,
    model_a: nn.Module,
    name_b: str,
    model_b: nn.Module,
    logger_cls: Callable,
    should_log_inputs: bool = False,
    base_name_to_sets_of_related_ops: dict | None = None,
    unmatchable_types_map: dict | None = None,
) -> tuple[GraphModule, GraphModule]:
    """Copies of both models with a ``logger_cls`` (e.g. :class:`OutputLogger`) after each
    matched layer (and before its inputs with ``should_log_inputs``). Run data through both,
    then read the logs with :func:`extract_logger_info`."""
    _no_custom(
        base_name_to_sets_of_related_ops=base_name_to_sets_of_related_ops,
        unmatchable_types_map=unmatchable_types_map,
    )
    gm_a, gm_b = _graph_module(model_a, "a"), _graph_module(model_b, "b")
    pairs = get_matching_subgraph_pairs(gm_a, gm_b)
    out_a = add_loggers_to_model(
        gm_a, {k: a for k, (a, _) in pairs.items()}, name_a, logger_cls, should_log_inputs
    )
    out_b = add_loggers_to_model(
        gm_b, {k: b for k, (_, b) in pairs.items()}, name_b, logger_cls, should_log_inputs
    )
    return out_a, out_b


def _collect(models: tuple[nn.Module, ...], logger_cls: Callable) -> NSResultsType:
    results: NSResultsType = {}
    for model in models:
        for _, mod in model.named_modules():
            if not isinstance(mod, logger_cls):
                continue
            entry = {
                "type": mod.results_type,
                "values": list(mod.stats_rnn) if mod.stats_rnn else list(mod.stats),
                "ref_node_name": mod.ref_node_name,
                "ref_node_target_type": mod.ref_node_target_type,
                "prev_node_name": mod.prev_node_name,
                "prev_node_target_type": mod.prev_node_target_type,
                "index_within_arg": mod.index_within_arg,
                "index_of_arg": mod.index_of_arg,
                "fqn": mod.fqn,
                "qconfig_str": mod.qconfig_str,
                "comparisons": list(getattr(mod, "comparisons", [])),
                "comparison_fn_name": getattr(mod, "comparison_fn_name", ""),
            }
            by_type = results.setdefault(mod.ref_name, {}).setdefault(mod.results_type, {})
            by_type.setdefault(mod.model_name, []).append(entry)
    for by_type in results.values():
        for by_model in by_type.values():
            for entries in by_model.values():
                entries.sort(key=lambda e: (e["index_of_arg"], e["index_within_arg"]))
    return results


def _rekey(results: NSResultsType, model_name: str | None) -> NSResultsType:
    """Key each layer by the op node's name in ``model_name`` (kept as is when None)."""
    if model_name is None:
        return results
    out = {}
    for layer, by_type in results.items():
        key = layer
        for by_model in by_type.values():
            if by_model.get(model_name):
                key = by_model[model_name][0]["ref_node_name"]
                break
        out[key] = by_type
    return out


def extract_logger_info(
    model_a: nn.Module,
    model_b: nn.Module,
    logger_cls: Callable,
    model_name_to_use_for_layer_names: str,
) -> NSResultsType:
    """What the loggers of :func:`add_loggers`' two models recorded, as results keyed by
    the layer names of ``model_name_to_use_for_layer_names``."""
    return _rekey(_collect((model_a, model_b), logger_cls), model_name_to_use_for_layer_names)


def add_shadow_loggers(
    name_a: str,
    model_a: nn.Module,
    name_b: str,
    model_b: nn.Module,
    logger_cls: Callable,
    should_log_inputs: bool = False,
    base_name_to_sets_of_related_ops: dict | None = None,
    node_type_to_io_type_map: dict | None = None,
    unmatchable_types_map: dict | None = None,
) -> GraphModule:
    """A copy of ``model_b`` in which a float copy of each matched layer of ``model_a`` runs
    on the same (dequantized) inputs as b's layer, with loggers on both outputs: each layer's
    own error, without the error of the layers before it. Read with
    :func:`extract_shadow_logger_info`."""
    _no_custom(
        base_name_to_sets_of_related_ops=base_name_to_sets_of_related_ops,
        node_type_to_io_type_map=node_type_to_io_type_map,
        unmatchable_types_map=unmatchable_types_map,
    )
    if should_log_inputs:
        raise NotImplementedError("add_shadow_loggers: should_log_inputs=True is not supported")
    gm_a, gm_b = _graph_module(model_a, "a"), _graph_module(model_b, "b")
    pairs = get_matching_subgraph_pairs(gm_a, gm_b)
    return create_a_shadows_b(name_a, gm_a, name_b, gm_b, pairs, logger_cls, should_log_inputs)


def extract_shadow_logger_info(
    model_a_shadows_b: nn.Module,
    logger_cls: Callable,
    model_name_to_use_for_layer_names: str,
) -> NSResultsType:
    """What the loggers of :func:`add_shadow_loggers`' model recorded, as results."""
    return _rekey(_collect((model_a_shadows_b,), logger_cls), model_name_to_use_for_layer_names)


def extend_logger_results_with_comparison(
    results: NSResultsType,
    model_name_1: str,
    model_name_2: str,
    comparison_fn: Callable[[Any, Any], Any],
    comparison_name: str,
) -> None:
    """Add ``comparison_fn(value of model 1, value of model 2)`` for every logged value to
    model 2's entries, under ``comparison_name`` (in place)."""
    for layer, by_type in results.items():
        for by_model in by_type.values():
            if model_name_1 not in by_model or model_name_2 not in by_model:
                raise ValueError(
                    f"extend_logger_results_with_comparison: layer '{layer}' has results for "
                    f"{sorted(by_model)}, not for both '{model_name_1}' and '{model_name_2}'"
                )
            refs = {(e["index_of_arg"], e["index_within_arg"]): e for e in by_model[model_name_1]}
            for entry in by_model[model_name_2]:
                ref = refs.get((entry["index_of_arg"], entry["index_within_arg"]))
                if ref is None:
                    continue
                entry[comparison_name] = [
                    comparison_fn(v1, v2) for v1, v2 in zip(ref["values"], entry["values"])
                ]


def _loggers(model: nn.Module):
    return (m for m in model.modules() if isinstance(m, OutputLogger))


def loggers_set_enabled(model: nn.Module, enabled: bool) -> None:
    """Switch every numeric-suite logger in ``model`` on or off."""
    for m in _loggers(model):
        m.enabled = enabled


def loggers_set_save_activations(model: nn.Module, save_activations: bool) -> None:
    """Make every numeric-suite logger in ``model`` keep (or drop) what it sees."""
    for m in _loggers(model):
        m.save_activations = save_activations
