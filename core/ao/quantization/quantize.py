"""Eager-mode quantization: ``prepare`` / ``prepare_qat`` / ``convert`` / ``quantize`` /
``quantize_dynamic`` / ``quantize_qat``, with torch's semantics.

``prepare`` gives every module the qconfig of its nearest ancestor that has one and attaches an
observer (``activation_post_process``) to the output of each quantizable leaf; calibration runs
data through; ``convert`` swaps each observed module for its quantized counterpart (a mapping
from float type to quantized type, torch's defaults in ``quantization_mappings``).
"""

from __future__ import annotations

import copy
import itertools
import warnings

import numpy as np

from ... import nn
from ... import quantized as _q
from ..nn.intrinsic.modules.fused import _FusedModule
from .fake_quantize import FakeQuantizeBase
from .observer import ObserverBase, PlaceholderObserver, _np
from .qconfig import QConfigMapping, default_dynamic_qconfig, float16_dynamic_qconfig
from .quantization_mappings import (
    get_default_dynamic_quant_module_mappings,
    get_default_qat_module_mappings,
    get_default_qconfig_propagation_list,
    get_default_static_quant_module_mappings,
    no_observer_set,
)

__all__ = [
    "propagate_qconfig_",
    "add_observer_",
    "prepare",
    "prepare_qat",
    "convert",
    "quantize",
    "quantize_dynamic",
    "quantize_qat",
    "swap_module",
    "add_quant_dequant",
    "get_observer_dict",
]


# ---- qconfig propagation -----------------------------------------------------------------
def propagate_qconfig_(module, qconfig_dict=None, prepare_custom_config_dict=None) -> None:
    """Give each submodule a ``qconfig``: its own, else one from ``qconfig_dict`` (keys: module
    types or dotted names; a QConfigMapping works too), else its parent's."""
    if isinstance(qconfig_dict, QConfigMapping):
        mapping = qconfig_dict

        def lookup(name, mod, parent):
            if (
                mapping.global_qconfig is None
                and name == ""
                and not (
                    mapping.module_name_qconfigs
                    or mapping.object_type_qconfigs
                    or mapping.module_name_regex_qconfigs
                )
            ):
                return parent
            qc = mapping.qconfig_for(name, mod)
            return parent if qc is None and name not in mapping.module_name_qconfigs else qc
    else:
        qd = qconfig_dict or {}

        def lookup(name, mod, parent):
            qc = qd.get(type(mod), parent)
            return qd.get(name, qc)

    def walk(mod, parent_qc, prefix):
        qc = lookup(prefix, mod, parent_qc)
        qc = getattr(mod, "qconfig", qc) if "qconfig" in mod.__dict__ else qc
        mod.qconfig = qc
        if isinstance(mod, _FusedModule):  # a fused module is one unit: children follow it
            for c in mod.children():
                c.qconfig = qc
            return
        for name, child in mod.named_children():
            walk(child, qc, f"{prefix}.{name}" if prefix else name)

    walk(module, getattr(module, "qconfig", None), "")


# ---- observers ---------------------------------------------------------------------------
def _observer_forward_hook(self, input, output):
    return self.activation_post_process(output)


_observer_forward_hook._ember_observer_hook = True


def _has_observable_qconfig(mod) -> bool:
    qc = getattr(mod, "qconfig", None)
    return qc is not None and qc.activation is not None


def add_observer_(
    module,
    qconfig_propagation_list=None,
    non_leaf_module_list=None,
    device=None,
    custom_module_class_mapping=None,
) -> None:
    """Attach ``activation_post_process`` (from each module's qconfig) to quantizable leaves,
    called on their output by a forward hook."""
    allowed = qconfig_propagation_list or get_default_qconfig_propagation_list()
    non_leaf = set(non_leaf_module_list or ())

    def add(mod):
        if not _has_observable_qconfig(mod):
            return
        obs = mod.qconfig.activation()
        mod.activation_post_process = obs
        mod.register_forward_hook(_observer_forward_hook, prepend=True)

    for child in module.children():
        if isinstance(child, _float_functional()):
            if _has_observable_qconfig(child):
                child.activation_post_process = child.qconfig.activation()
        elif isinstance(child, _FusedModule) or type(child) in non_leaf:
            if type(child) in allowed or isinstance(child, _FusedModule):
                add(child)
        elif type(child) in no_observer_set:
            continue
        elif isinstance(child, (ObserverBase, FakeQuantizeBase)):
            continue
        else:
            add_observer_(child, allowed, non_leaf)
            if not list(child.children()) and type(child) in allowed:
                add(child)
            elif hasattr(child, "weight_fake_quant") and type(child) in allowed:
                add(child)  # QAT modules (ConvBn2d owns a bn child, still one unit)


def _float_functional():
    from ..nn.quantized import FloatFunctional

    return FloatFunctional


def prepare(
    model,
    inplace: bool = False,
    allow_list=None,
    observer_non_leaf_module_list=None,
    prepare_custom_config_dict=None,
):
    """Insert observers: run calibration data through the result, then ``convert`` it."""
    if not inplace:
        model = copy.deepcopy(model)
    propagate_qconfig_(model, qconfig_dict=None)
    if not any(getattr(m, "qconfig", None) for m in model.modules()):
        warnings.warn(
            "None of the submodule got qconfig applied. Make sure you passed correct "
            "configuration through `qconfig_dict` or by assigning the `.qconfig` "
            "attribute directly on submodules",
            stacklevel=2,
        )
    add_observer_(model, allow_list, observer_non_leaf_module_list)
    return model


def prepare_qat(model, mapping=None, inplace: bool = False):
    """Swap layers for their QAT forms (fake-quantized weights) and add activation fake
    quantizers; train the result, then ``convert`` it."""
    if not model.training:
        raise AssertionError(
            "prepare_qat only works on models in training mode (call model.train())"
        )
    mapping = mapping or get_default_qat_module_mappings()
    if not inplace:
        model = copy.deepcopy(model)
    propagate_qconfig_(model, qconfig_dict=None)
    convert(model, mapping=mapping, inplace=True, remove_qconfig=False)
    prepare(model, observer_non_leaf_module_list=set(mapping.values()), inplace=True)
    return model


# ---- convert -----------------------------------------------------------------------------
def _uncalibrated(obs) -> bool:
    """True when an observer (or a fake quantizer's observer) has recorded nothing."""
    if isinstance(obs, FakeQuantizeBase):
        obs = getattr(obs, "activation_post_process", None)
    if obs is None or isinstance(obs, PlaceholderObserver):
        return False
    lo = getattr(obs, "min_val", None)
    if lo is None:
        return False
    a = _np(lo)
    return a.size == 0 or bool(np.isinf(a).all())


def _check_calibrated(mod, path: str) -> None:
    # torch converts such a module with the observer's default qparams (scale 1, zero point
    # 0) and a warning; torchvision relies on it (modules off the eval path, such as
    # GoogLeNet's auxiliary heads or an unused skip add, are never calibrated)
    obs = getattr(mod, "activation_post_process", None)
    if obs is not None and _uncalibrated(obs):
        warnings.warn(
            f"convert: the observer of module '{path or '<root>'}' ({type(mod).__name__}) has "
            f"seen no data; it gets the default scale 1.0 and zero point 0. Run calibration "
            f"batches through the prepared model (in eval mode) before convert() if this "
            f"module is on the forward path.",
            UserWarning,
            stacklevel=4,
        )


def swap_module(
    mod, mapping, custom_module_class_mapping=None, use_precomputed_fake_quant=False, path: str = ""
):
    """The quantized replacement of ``mod`` per ``mapping`` (``mod`` itself when unmapped)."""
    if getattr(mod, "qconfig", None) is None or type(mod) not in mapping:
        return mod
    _check_calibrated(mod, path)
    new = mapping[type(mod)].from_float(mod)
    for hook in mod._forward_pre_hooks.values():
        new.register_forward_pre_hook(hook)
    for hook in mod._forward_hooks.values():
        if not getattr(hook, "_ember_observer_hook", False):
            new.register_forward_hook(hook)
    new.train(mod.training)
    return new


_PASS_THROUGH = (
    nn.ReLU,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.Flatten,
    nn.Identity,
    nn.Dropout,
    nn.Unflatten,
)


def _check_supported(mod, mapping, path: str) -> None:
    """A leaf that computes on values (it has parameters) but has no quantized counterpart
    would silently read integer codes as values: refuse it, naming it."""
    if isinstance(mod, _PASS_THROUGH) or getattr(mod, "qconfig", None) is None:
        return
    if isinstance(mod, (ObserverBase, FakeQuantizeBase)):
        return
    if list(mod.children()) and not isinstance(mod, _FusedModule):
        return
    if any(True for _ in mod.parameters(recurse=True)):
        raise RuntimeError(
            f"convert: module '{path}' ({type(mod).__name__}) has a qconfig but no quantized "
            f"version in the mapping. Fuse it into its neighbour (fuse_modules), keep it in "
            f"float by setting `model.{path}.qconfig = None` (with a DeQuantStub before it and "
            f"a QuantStub after), or pass a mapping that covers {type(mod).__name__}."
        )


def _convert(module, mapping, is_reference, path, static: bool):
    reassign = {}
    for name, child in module.named_children():
        p = f"{path}.{name}" if path else name
        if not isinstance(child, _FusedModule) and type(child) not in mapping:
            _convert(child, mapping, is_reference, p, static)
            if static:
                _check_supported(child, mapping, p)
        reassign[name] = swap_module(child, mapping, path=p)
    for name, m in reassign.items():
        setattr(module, name, m)


def convert(
    module,
    mapping=None,
    inplace: bool = False,
    remove_qconfig: bool = True,
    is_reference: bool = False,
    convert_custom_config_dict=None,
    use_precomputed_fake_quant: bool = False,
):
    """Swap every observed module for its quantized counterpart (torch's default mapping:
    Linear / Conv1d / Conv2d / fused ReLU variants / QAT modules / stubs)."""
    if is_reference:
        raise NotImplementedError(
            "convert(is_reference=True) produces reference modules for "
            "FX graph mode, which ember does not have yet"
        )
    static = mapping is None
    mapping = mapping or get_default_static_quant_module_mappings()
    if not inplace:
        module = copy.deepcopy(module)
    _convert(module, mapping, is_reference, "", static)
    if remove_qconfig:
        _remove_qconfig(module)
    return module


def _remove_qconfig(module) -> None:
    for m in module.modules():
        if "qconfig" in m.__dict__:
            del m.__dict__["qconfig"]
        if (
            hasattr(m, "activation_post_process")
            and not isinstance(m, (FakeQuantizeBase,))
            and type(m).__name__ not in ("QFunctional",)
        ):
            if isinstance(m.activation_post_process, (ObserverBase, FakeQuantizeBase)):
                delattr(m, "activation_post_process")
                for k, h in list(m._forward_hooks.items()):
                    if getattr(h, "_ember_observer_hook", False):
                        del m._forward_hooks[k]


def quantize(model, run_fn, run_args, mapping=None, inplace: bool = False):
    """Post-training static quantization in one call: prepare, calibrate, convert."""
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    prepare(model, inplace=True)
    run_fn(model, *run_args)
    convert(model, mapping, inplace=True)
    return model


def quantize_qat(model, run_fn, run_args, inplace: bool = False):
    """Quantization-aware training in one call: prepare_qat, train (``run_fn``), convert."""
    if not inplace:
        model = copy.deepcopy(model)
    model.train()
    prepare_qat(model, inplace=True)
    run_fn(model, *run_args)
    convert(model, inplace=True)
    return model


def quantize_dynamic(model, qconfig_spec=None, dtype=_q.qint8, mapping=None, inplace: bool = False):
    """Replace Linear / LSTM / GRU (or what ``qconfig_spec`` names) by dynamically quantized
    versions: int8 weights, activations quantized per call, float in and out."""
    if dtype is not _q.qint8:
        raise NotImplementedError(
            f"quantize_dynamic: dtype={dtype} is not supported by ember "
            f"(only ember.qint8; float16 / quint8 dynamic quantization "
            f"are not implemented)"
        )
    if qconfig_spec is None:
        qconfig_spec = {
            nn.Linear: default_dynamic_qconfig,
            nn.LSTM: default_dynamic_qconfig,
            nn.GRU: default_dynamic_qconfig,
        }
    elif isinstance(qconfig_spec, set):
        qconfig_spec = dict(zip(qconfig_spec, itertools.repeat(default_dynamic_qconfig)))
    if any(qc is float16_dynamic_qconfig for qc in qconfig_spec.values()):
        raise NotImplementedError(
            "quantize_dynamic: float16 dynamic quantization is not supported by ember"
        )
    mapping = mapping or get_default_dynamic_quant_module_mappings()
    if not inplace:
        model = copy.deepcopy(model)
    propagate_qconfig_(model, qconfig_spec)
    convert(model, mapping, inplace=True)
    return model


def add_quant_dequant(module):
    """Wrap leaves that have a qconfig in QuantWrapper (torch's helper)."""
    from .stubs import QuantWrapper

    if not list(module.children()) and getattr(module, "qconfig", None):
        return QuantWrapper(module)
    for name, child in module.named_children():
        setattr(module, name, add_quant_dequant(child))
    return module


def get_observer_dict(mod, target_dict, prefix: str = "") -> None:
    """Collect every ``activation_post_process`` under ``mod`` into ``target_dict``."""
    for name, m in mod.named_modules(prefix=prefix):
        if hasattr(m, "activation_post_process"):
            target_dict[(name + "." if name else "") + "activation_post_process"] = (
                m.activation_post_process
            )
