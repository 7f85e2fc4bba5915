"""FX graph mode for dynamic and weight-only qconfigs (torch's post-training dynamic
quantization tutorial: ``default_dynamic_qconfig`` for ``nn.Linear`` / ``nn.LSTM`` / ``nn.GRU``,
``float_qparams_weight_only_qconfig`` for ``nn.Embedding``).

``prepare`` traces the model and, as torch does, puts a ``PlaceholderObserver(dtype=quint8,
is_dynamic=True)`` (``activation_post_process_N``) before each module that will quantize its
input at run time; nothing needs calibrating. ``convert`` drops those observers and swaps the
modules for their dynamically quantized (or weight-only) versions.
"""

from __future__ import annotations

import copy

from .... import nn
from ....fx import GraphModule, symbolic_trace
from ..quantization_mappings import get_default_dynamic_quant_module_mappings

__all__ = [
    "is_dynamic_mapping",
    "is_runtime_qconfig",
    "prepare_dynamic",
    "convert_dynamic",
    "split_runtime_nodes",
    "runtime_observer",
]

_PREFIX = "activation_post_process_"


def _qconfigs(mapping) -> list:
    qcs = [mapping.global_qconfig, *mapping.object_type_qconfigs.values()]
    qcs += [*mapping.module_name_regex_qconfigs.values(), *mapping.module_name_qconfigs.values()]
    return [q for q in qcs if q is not None]


def _weight_only(qc) -> bool:
    act = qc.activation()
    dtype = getattr(act, "dtype", None)
    float_act = dtype is None or (dtype.is_floating_point and dtype.itemsize >= 2)
    return not getattr(act, "is_dynamic", False) and float_act


def is_runtime_qconfig(qc) -> bool:
    """A dynamic or weight-only qconfig: activations quantized at run time, or left float."""
    return qc is not None and (getattr(qc.activation(), "is_dynamic", False) or _weight_only(qc))


def split_runtime_nodes(gm, node_qc: dict) -> dict:
    """Mixed mappings (a static qconfig beside dynamic / weight-only ones, which torch allows):
    take the modules with a dynamic version whose qconfig is dynamic / weight-only out of
    ``node_qc`` (no static observers: their inputs and outputs stay float) and return them,
    node name -> qconfig. Other nodes under such a qconfig stay float (qconfig None)."""
    modules = dict(gm.named_modules())
    dyn_types = get_default_dynamic_quant_module_mappings()
    runtime = {}
    for node in gm.graph.nodes:
        qc = node_qc.get(node.name)
        if not is_runtime_qconfig(qc):
            continue
        node_qc[node.name] = None
        if node.op == "call_module" and type(modules[node.target]) in dyn_types:
            runtime[node.name] = qc
    return runtime


def runtime_observer(qc):
    """The observer before a module under ``qc`` (mixed mappings): the ``PlaceholderObserver``
    of a dynamic qconfig, None for a weight-only one (its input stays float)."""
    return None if _weight_only(qc) else qc.activation()


def is_dynamic_mapping(mapping) -> bool:
    """Every qconfig quantizes activations at run time or leaves them float (none is static)."""
    qcs = _qconfigs(mapping)
    return bool(qcs) and all(
        getattr(q.activation(), "is_dynamic", False) or _weight_only(q) for q in qcs
    )


def prepare_dynamic(model, mapping, module_qconfig) -> GraphModule:
    model = copy.deepcopy(model)
    gm = model if isinstance(model, GraphModule) else symbolic_trace(model)
    modules = dict(gm.named_modules())
    dyn_types = get_default_dynamic_quant_module_mappings()
    count = 0
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        mod = modules[node.target]
        qc = module_qconfig(mapping, node.target, mod)
        if qc is None or type(mod) not in dyn_types:
            continue
        mod.qconfig = qc  # convert (from_float) reads it off the module
        if _weight_only(qc) or not node.args:
            continue
        name = f"{_PREFIX}{count}"
        count += 1
        gm.add_submodule(name, qc.activation())
        with gm.graph.inserting_before(node):
            obs = gm.graph.call_module(name, (node.args[0],))
        node.replace_input_with(node.args[0], obs)
    gm.recompile()
    gm._ember_fx_quant = {"dynamic": True, "qconfig_mapping": mapping}
    return gm


def convert_dynamic(graph_module: GraphModule) -> GraphModule:
    gm = copy.deepcopy(graph_module)
    mapping = get_default_dynamic_quant_module_mappings()
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        if node.target.startswith(_PREFIX):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
            continue
        mod = gm.get_submodule(node.target)
        if "qconfig" in mod.__dict__ and type(mod) in mapping:
            gm.add_submodule(node.target, mapping[type(mod)].from_float(mod))
    for m in gm.modules():
        if isinstance(m, nn.Module) and "qconfig" in m.__dict__:
            del m.__dict__["qconfig"]
    for name in [n for n in gm._modules if n.startswith(_PREFIX)]:
        del gm._modules[name]
    gm.graph.lint()
    gm.recompile()
    del gm._ember_fx_quant
    return gm
