"""Helpers shared by the quantizable models (torchvision.models.quantization.utils)."""

from __future__ import annotations

from typing import Any

import ember
from ember import nn
from ember.ao import quantization as tq

__all__ = ["quantize_model"]

# torchvision calibrates ``quantize=True`` builds on one random image of Inception's size
_CALIBRATION_SIZE = (1, 3, 299, 299)


def _replace_relu(module: nn.Module) -> None:
    """Replace every ``ReLU`` / ``ReLU6`` (exactly those types) by a non-inplace ``ReLU``, in
    place: fusion takes conv + bn + ReLU, and an in-place ReLU would overwrite the tensor an
    observer records. (``ReLU6`` becomes ``ReLU``, as in torchvision: quantization clamps
    to the observed range anyway.)"""
    for name, child in list(module.named_children()):
        _replace_relu(child)
        if type(child) is nn.ReLU or type(child) is nn.ReLU6:
            module._modules[name] = nn.ReLU(inplace=False)


def _fuse_modules(
    model: nn.Module, modules_to_fuse: list, is_qat: bool | None, **kwargs: Any
) -> nn.Module:
    """``fuse_modules`` or ``fuse_modules_qat``; ``is_qat=None`` follows ``model.training``."""
    if is_qat is None:
        is_qat = model.training
    method = tq.fuse_modules_qat if is_qat else tq.fuse_modules
    return method(model, modules_to_fuse, **kwargs)


class _FusableConvBnReLU:
    """Mixin for GoogLeNet's and Inception's ``BasicConv2d`` (``conv`` -> ``bn`` -> ReLU):
    the ReLU as a module, so that ``fuse_model`` can fuse the three."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse conv + bn + relu."""
        _fuse_modules(self, ["conv", "bn", "relu"], is_qat, inplace=True)


def quantize_model(model: nn.Module, backend: str) -> nn.Module:
    """Post-training static quantization of a quantizable model, in place, as torchvision's
    ``quantize=True`` builders do it: eval mode, fuse, observers per ``backend`` ("fbgemm":
    per-channel weights; "qnnpack": per-tensor), one calibration pass on a random image,
    convert to int8 modules."""
    if backend not in ember.backends.quantized.supported_engines:
        raise RuntimeError(f"Quantized backend not supported: {backend!r}")
    ember.backends.quantized.engine = backend
    model.eval()
    weight = (
        tq.default_per_channel_weight_observer
        if backend == "fbgemm"
        else tq.default_weight_observer
    )
    model.qconfig = tq.QConfig(activation=tq.default_observer, weight=weight)
    model.fuse_model()
    tq.prepare(model, inplace=True)
    with ember.no_grad():
        model(ember.rand(*_CALIBRATION_SIZE))
    tq.convert(model, inplace=True)
    return model


def _quantizable_builder(model: nn.Module, weights, progress: bool, quantize: bool, backend):
    """The tail every quantizable builder shares: replace the ReLUs, quantize when asked, then
    load the (quantized or float) weights."""
    from .._api import load_weights

    _replace_relu(model)
    if quantize:
        quantize_model(model, backend)
    return load_weights(model, weights, progress)


def _builder_kwargs(weights, kwargs: dict, default_backend: str = "fbgemm") -> str:
    """Set ``num_classes`` from ``weights`` (1000) and pop the backend (the weights' own when
    they name one)."""
    from .._api import _ovewrite_named_param

    if weights is not None:
        _ovewrite_named_param(kwargs, "num_classes", 1000)
        if "backend" in weights.meta:
            _ovewrite_named_param(kwargs, "backend", weights.meta["backend"])
    return kwargs.pop("backend", default_backend)


def _legacy(quantized_enum, float_enum, quantized_name: str = "IMAGENET1K_FBGEMM_V1"):
    """``pretrained=True``: the quantized entry under ``quantize=True``, else the float V1."""
    return lambda kwargs: (
        quantized_enum[quantized_name]
        if kwargs.get("quantize", False)
        else float_enum["IMAGENET1K_V1"]
    )
