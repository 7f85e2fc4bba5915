"""``fuse_modules``: merge conv-bn(-relu), conv-relu, linear-relu, linear-bn into one module
(batch norm folded into the weights in eval mode; kept as a fused QAT-ready container in
training / ``is_qat``)."""

from __future__ import annotations

import copy

from ... import nn
from ...nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval
from ..nn import intrinsic as nni

__all__ = [
    "fuse_modules",
    "fuse_modules_qat",
    "fuse_known_modules",
    "get_fuser_method",
    "DEFAULT_OP_LIST_TO_FUSER_METHOD",
]


def _conv_bn(is_qat, conv, bn):
    if conv.out_channels != bn.num_features:
        raise AssertionError("Output channel of Conv must match num_features of BatchNorm")
    if is_qat:
        if not (bn.affine and bn.track_running_stats):
            raise AssertionError(
                "Only support fusing BatchNorm with affine set to True and "
                "track_running_stats set to True"
            )
        return {nn.Conv1d: nni.ConvBn1d, nn.Conv2d: nni.ConvBn2d}[type(conv)](conv, bn)
    return fuse_conv_bn_eval(conv, bn)


def _conv_bn_relu(is_qat, conv, bn, relu):
    if is_qat:
        return {nn.Conv1d: nni.ConvBnReLU1d, nn.Conv2d: nni.ConvBnReLU2d}[type(conv)](
            conv, bn, relu
        )
    fused = fuse_conv_bn_eval(conv, bn)
    return {nn.Conv1d: nni.ConvReLU1d, nn.Conv2d: nni.ConvReLU2d}[type(conv)](fused, relu)


def _conv_relu(is_qat, conv, relu):
    return {nn.Conv1d: nni.ConvReLU1d, nn.Conv2d: nni.ConvReLU2d}[type(conv)](conv, relu)


def _linear_bn(is_qat, linear, bn):
    if linear.out_features != bn.num_features:
        raise AssertionError("Output features of Linear must match num_features of BatchNorm1d")
    if is_qat:
        return nni.LinearBn1d(linear, bn)
    return fuse_linear_bn_eval(linear, bn)


def _linear_relu(is_qat, linear, relu):
    return nni.LinearReLU(linear, relu)


def _bn_relu(is_qat, bn, relu):
    return nni.BNReLU2d(bn, relu)


DEFAULT_OP_LIST_TO_FUSER_METHOD = {
    (nn.Conv1d, nn.BatchNorm1d): _conv_bn,
    (nn.Conv1d, nn.BatchNorm1d, nn.ReLU): _conv_bn_relu,
    (nn.Conv2d, nn.BatchNorm2d): _conv_bn,
    (nn.Conv2d, nn.BatchNorm2d, nn.ReLU): _conv_bn_relu,
    (nn.Conv1d, nn.ReLU): _conv_relu,
    (nn.Conv2d, nn.ReLU): _conv_relu,
    (nn.Linear, nn.BatchNorm1d): _linear_bn,
    (nn.Linear, nn.ReLU): _linear_relu,
    (nn.BatchNorm2d, nn.ReLU): _bn_relu,
}


def get_fuser_method(op_list, additional_fuser_method_mapping=None):
    """The function that fuses modules of these types, or an error naming them."""
    table = dict(DEFAULT_OP_LIST_TO_FUSER_METHOD)
    table.update(additional_fuser_method_mapping or {})
    fn = table.get(tuple(op_list))
    if fn is None:
        known = [tuple(t.__name__ for t in k) for k in DEFAULT_OP_LIST_TO_FUSER_METHOD]
        raise AssertionError(
            f"did not find fuser method for: "
            f"{tuple(t.__name__ for t in op_list)}; fusable sequences: {known}"
        )
    return fn


def fuse_known_modules(mod_list, is_qat: bool, additional_fuser_method_mapping=None):
    """Fuse a list of modules: the first becomes the fused module, the rest ``nn.Identity``."""
    types = tuple(type(m) for m in mod_list)
    fuser = get_fuser_method(types, additional_fuser_method_mapping)
    fused = fuser(is_qat, *mod_list)
    out = [nn.Identity() for _ in mod_list]
    # forward hooks of the first module's pre-hooks and the last module's hooks move over
    for h in mod_list[0]._forward_pre_hooks.values():
        fused.register_forward_pre_hook(h)
    for h in mod_list[-1]._forward_hooks.values():
        fused.register_forward_hook(h)
    out[0] = fused
    return out


def _get(model, name: str):
    mod = model
    for part in name.split("."):
        if not hasattr(mod, part) and not (part.isdigit() and hasattr(mod, "__getitem__")):
            raise AttributeError(f"fuse_modules: {type(model).__name__} has no submodule {name!r}")
        mod = mod[int(part)] if part.isdigit() and not hasattr(mod, part) else getattr(mod, part)
    return mod


def _set(model, name: str, new) -> None:
    *parents, last = name.split(".")
    parent = _get(model, ".".join(parents)) if parents else model
    setattr(parent, last, new)


def _fuse(model, modules_to_fuse, is_qat, inplace, fuser_func, fuse_custom_config_dict):
    if not inplace:
        model = copy.deepcopy(model)
    groups = modules_to_fuse
    if all(isinstance(n, str) for n in groups):
        groups = [groups]
    extra = (fuse_custom_config_dict or {}).get("additional_fuser_method_mapping", {})
    for names in groups:
        mods = [_get(model, n) for n in names]
        if (
            not is_qat
            and any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in mods)
            and any(m.training for m in mods)
        ):
            raise AssertionError(
                f"Fusion only for eval! (modules {list(names)}): call "
                f"model.eval() first, or use fuse_modules_qat for QAT"
            )
        new = fuser_func(mods, is_qat, extra)
        for n, m in zip(names, new):
            _set(model, n, m)
    return model


def fuse_modules(
    model,
    modules_to_fuse,
    inplace: bool = False,
    fuser_func=fuse_known_modules,
    fuse_custom_config_dict=None,
):
    """Fuse groups of modules named in ``modules_to_fuse`` (a list of names, or a list of
    such lists) for post-training quantization; the model must be in eval mode."""
    return _fuse(model, modules_to_fuse, False, inplace, fuser_func, fuse_custom_config_dict)


def fuse_modules_qat(
    model,
    modules_to_fuse,
    inplace: bool = False,
    fuser_func=fuse_known_modules,
    fuse_custom_config_dict=None,
):
    """Fuse for quantization-aware training (batch norms stay, in ``ConvBn*`` containers)."""
    return _fuse(model, modules_to_fuse, True, inplace, fuser_func, fuse_custom_config_dict)
