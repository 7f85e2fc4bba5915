"""``prepare``: trace, fuse, swap QAT modules, and insert observers
(``activation_post_process_N`` modules) at the inputs and outputs of quantizable nodes."""

from __future__ import annotations

import copy
import re

from .... import nn
from .... import quantized as _q
from ....fx import GraphModule, TraceError, symbolic_trace
from ..qconfig import QConfigMapping
from ..quantization_mappings import (
    get_default_dynamic_quant_module_mappings,
    get_default_qat_module_mappings,
)
from .fuse import fuse_graph
from .patterns import SHARE_MODULES, WEIGHTED_MODULES, is_relu, node_kind

__all__ = ["prepare", "module_qconfig", "OBSERVER_PREFIX"]

OBSERVER_PREFIX = "activation_post_process_"


def module_qconfig(mapping: QConfigMapping, path: str, mod):
    """torch's precedence: module name (the path or its nearest named ancestor) > module name
    regex > object type > global."""
    parts = path.split(".") if path else []
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if name in mapping.module_name_qconfigs:
            return mapping.module_name_qconfigs[name]
    for pattern, qc in mapping.module_name_regex_qconfigs.items():
        if re.match(pattern, path):
            return qc
    for cls in type(mod).__mro__:
        if cls in mapping.object_type_qconfigs:
            return mapping.object_type_qconfigs[cls]
    return mapping.global_qconfig


def _node_qconfig(mapping: QConfigMapping, node, modules):
    if node.op == "call_module":
        return module_qconfig(mapping, node.target, modules[node.target])
    if node.target in mapping.object_type_qconfigs:  # a function (operator.add) or method name
        return mapping.object_type_qconfigs[node.target]
    # else the qconfig of the innermost module whose forward made this call (torch's rule)
    stack = [p for p, _ in node.meta.get("nn_module_stack", {}).values() if p]
    if stack and stack[-1] in modules:
        return module_qconfig(mapping, stack[-1], modules[stack[-1]])
    return mapping.global_qconfig


def _check_mapping(model, mapping: QConfigMapping, is_qat: bool) -> None:
    """Refuse what FX mode here cannot honour, naming it: non-quint8 static activation
    qconfigs, dynamic ones in QAT, ``set_module_name_object_type_order``, and a module named
    in ``set_module_name`` that the model lacks or that has nothing to quantize."""
    from ._dynamic import is_runtime_qconfig

    if mapping.module_name_object_type_order_qconfigs:
        raise NotImplementedError(
            "prepare_fx: set_module_name_object_type_order is not "
            "supported by ember's FX graph mode yet"
        )
    qconfigs = [("global", mapping.global_qconfig)]
    qconfigs += [
        (f"object type {getattr(t, '__name__', t)}", q)
        for t, q in mapping.object_type_qconfigs.items()
    ]
    qconfigs += [
        (f"module name regex {r!r}", q) for r, q in mapping.module_name_regex_qconfigs.items()
    ]
    qconfigs += [(f"module name {n!r}", q) for n, q in mapping.module_name_qconfigs.items()]
    for where, qc in qconfigs:
        if qc is None or (not is_qat and is_runtime_qconfig(qc)):  # mixed: see _dynamic
            continue
        act = qc.activation()
        if getattr(act, "is_dynamic", False) or getattr(act, "dtype", None) is not _q.quint8:
            raise NotImplementedError(
                f"prepare_fx: the {where} qconfig observes activations as "
                f"{'dynamic ' if getattr(act, 'is_dynamic', False) else ''}"
                f"{getattr(act, 'dtype', None)}; FX graph mode here does static quint8 "
                f"activations only (use quantize_dynamic for dynamic quantization)"
            )
    modules = dict(model.named_modules())
    for name, qc in mapping.module_name_qconfigs.items():
        if name not in modules:
            raise ValueError(
                f"prepare_fx: qconfig_mapping.set_module_name names module "
                f"'{name}', which {type(model).__name__} does not have"
            )
        if qc is None:
            continue
        if not any(
            isinstance(m, WEIGHTED_MODULES)
            or (is_runtime_qconfig(qc) and type(m) in get_default_dynamic_quant_module_mappings())
            or type(m) in SHARE_MODULES
            or isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))
            for m in modules[name].modules()
        ) and list(modules[name].parameters()):
            raise ValueError(
                f"prepare_fx: module '{name}' ({type(modules[name]).__name__}) was given a "
                f"qconfig by set_module_name, but FX graph mode has no quantized version of "
                f"{type(modules[name]).__name__} (quantizable: Linear, Conv1d, Conv2d and their "
                f"fused forms, add / mul / cat, relu, pooling, shape ops); set its qconfig to "
                f"None to keep it float"
            )


class _Inserter:
    def __init__(self, gm):
        self.gm, self.graph, self.count = gm, gm.graph, 0
        self.observers: dict[str, str] = {}  # observer name -> "input" | "output"

    def is_observer(self, node) -> bool:
        return node.op == "call_module" and node.target in self.observers

    def insert(self, src, obs_mod, role: str):
        name = f"{OBSERVER_PREFIX}{self.count}"
        self.count += 1
        self.gm.add_submodule(name, obs_mod)
        self.observers[name] = role
        with self.graph.inserting_after(src):
            return self.graph.call_module(name, (src,))

    def module_of(self, obs_node):
        return self.gm.get_submodule(obs_node.target)


def _swap_qat(gm, qconfigs: dict) -> None:
    mapping = get_default_qat_module_mappings()
    for path, qc in qconfigs.items():
        mod = gm.get_submodule(path)
        if qc is None or type(mod) not in mapping:
            continue
        mod.qconfig = qc
        gm.add_submodule(path, mapping[type(mod)].from_float(mod))


def prepare(model, qconfig_mapping: QConfigMapping, is_qat: bool, example_inputs):
    if not isinstance(model, nn.Module):
        raise TypeError(f"prepare_fx: model must be an ember.nn.Module, got {type(model).__name__}")
    if isinstance(qconfig_mapping, dict):
        qconfig_mapping = QConfigMapping.from_dict(qconfig_mapping)
    if not isinstance(qconfig_mapping, QConfigMapping):
        raise TypeError(
            f"prepare_fx: qconfig_mapping must be a QConfigMapping (or its dict "
            f"form), got {type(qconfig_mapping).__name__}"
        )
    from ._dynamic import (
        is_dynamic_mapping,
        is_runtime_qconfig,
        prepare_dynamic,
        split_runtime_nodes,
    )

    if not is_qat and is_dynamic_mapping(qconfig_mapping):  # dynamic / weight-only qconfigs
        return prepare_dynamic(model, qconfig_mapping, module_qconfig)
    if not isinstance(example_inputs, tuple):
        raise TypeError(
            f"prepare_fx: example_inputs must be a tuple of the model's positional "
            f"inputs, got {type(example_inputs).__name__}"
        )
    _check_mapping(model, qconfig_mapping, is_qat)
    model = copy.deepcopy(model)
    try:
        gm = model if isinstance(model, GraphModule) else symbolic_trace(model)
    except TraceError as e:
        raise TraceError(
            f"prepare_fx: could not symbolically trace {type(model).__name__} "
            f"({e}); FX graph mode needs a traceable forward (or use eager-mode "
            f"prepare / convert)"
        ) from e
    modules = dict(gm.named_modules())
    skip = {  # no fusion for float modules nor for those quantized at run time
        n.target
        for n in gm.graph.nodes
        if n.op == "call_module"
        and (
            (qc := module_qconfig(qconfig_mapping, n.target, modules[n.target])) is None
            or (not is_qat and is_runtime_qconfig(qc))
        )
    }
    fuse_graph(gm, is_qat, skip)
    modules = dict(gm.named_modules())
    node_qc = {
        n.name: _node_qconfig(qconfig_mapping, n, modules)
        for n in gm.graph.nodes
        if n.op in ("call_module", "call_function", "call_method")
    }
    # nodes without a qconfig: convert names the qparams of their observers after the consumer
    float_nodes = {n for n, qc in node_qc.items() if qc is None}
    runtime = {} if is_qat else split_runtime_nodes(gm, node_qc)
    if is_qat:
        _swap_qat(gm, {n.target: node_qc[n.name] for n in gm.graph.nodes if n.op == "call_module"})
    modules = dict(gm.named_modules())
    for n in gm.graph.nodes:  # from_float (convert) reads the qconfig off the module
        if n.op == "call_module" and isinstance(modules[n.target], WEIGHTED_MODULES):
            modules[n.target].qconfig = node_qc[n.name]
    runtime_obs: list[str] = []
    kinds = _insert_observers(gm, modules, node_qc, runtime, runtime_obs)
    gm.recompile()
    gm._ember_fx_quant = {
        "is_qat": is_qat,
        "kinds": kinds,
        "qconfig_mapping": qconfig_mapping,
        "runtime": {n.name: n.target for n in gm.graph.nodes if n.name in runtime},
        "runtime_observers": set(runtime_obs),
        "float_nodes": float_nodes,
    }
    return gm


def _insert_observers(gm, modules, node_qc, runtime: dict, runtime_obs: list) -> dict:
    """Observers in graph order (torch's numbering); ``runtime``'s modules (dynamic /
    weight-only qconfigs in a mixed mapping) get their qconfig and, when dynamic, the
    placeholder observer before their input (its name joins ``runtime_obs``)."""
    from ._dynamic import runtime_observer

    ins = _Inserter(gm)
    input_obs: dict = {}  # float value -> its input observer node
    kinds: dict[str, str] = {}
    for node in list(gm.graph.nodes):
        if node.name in runtime:
            modules[node.target].qconfig = runtime[node.name]  # convert's from_float reads it
            obs_mod = runtime_observer(runtime[node.name])
            if obs_mod is not None and node.args:
                obs = ins.insert(node.args[0], obs_mod, "input")
                node.replace_input_with(node.args[0], obs)
                runtime_obs.append(obs.target)
            continue
        if ins.is_observer(node) or node.name not in node_qc:
            continue
        qc = node_qc[node.name]
        kind = node_kind(node, modules)
        if qc is None or kind is None:
            continue
        if kind == "share":
            src = node.args[0] if node.args else None
            if src is not None and ins.is_observer(src):
                out = ins.insert(node, ins.module_of(src), "output")
                node.replace_all_uses_with(out, lambda u, out=out: u is not out)
                kinds[node.name] = kind
            continue
        args = (
            list(node.args[0])
            if kind == "cat"
            else list(node.args[: 1 if kind == "weighted" else 2])
        )
        observed = []
        for a in args:
            if ins.is_observer(a):
                observed.append(a)
                continue
            if a not in input_obs:
                input_obs[a] = ins.insert(a, qc.activation(), "input")
            node.replace_input_with(a, input_obs[a])
            observed.append(input_obs[a])
        out_node = node
        if kind in ("add", "mul"):
            user = next(iter(node.users)) if len(node.users) == 1 else None
            if user is not None and is_relu(user, modules) and node_qc.get(user.name):
                out_node = user
                kinds[user.name] = "fused_relu"
        if kind == "cat":  # one observer for every input and the output (torch's sharing)
            shared = ins.module_of(observed[0])
            for o in observed[1:]:
                gm.add_submodule(o.target, shared)
            out_mod = shared
        else:
            out_mod = qc.activation()
        out = ins.insert(out_node, out_mod, "output")
        out_node.replace_all_uses_with(out, lambda u, out=out: u is not out)
        kinds[node.name] = kind
    return kinds
