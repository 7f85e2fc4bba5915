"""Which float module becomes which quantized / QAT / dynamic module (torch's default maps)."""

from __future__ import annotations

from ... import nn
from ..nn import intrinsic as nni
from ..nn import qat as nnqat
from ..nn import quantized as nnq
from ..nn.intrinsic import qat as nniqat
from ..nn.intrinsic import quantized as nniq
from ..nn.quantized import dynamic as nnqd
from .stubs import DeQuantStub, QuantStub

__all__ = [
    "DEFAULT_STATIC_QUANT_MODULE_MAPPINGS",
    "DEFAULT_QAT_MODULE_MAPPINGS",
    "DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS",
    "get_default_static_quant_module_mappings",
    "get_default_qat_module_mappings",
    "get_default_dynamic_quant_module_mappings",
    "get_default_qconfig_propagation_list",
    "get_default_compare_output_module_list",
    "no_observer_set",
]

DEFAULT_STATIC_QUANT_MODULE_MAPPINGS = {
    QuantStub: nnq.Quantize,
    DeQuantStub: nnq.DeQuantize,
    nn.Linear: nnq.Linear,
    nn.Conv1d: nnq.Conv1d,
    nn.Conv2d: nnq.Conv2d,
    nn.ReLU6: nnq.ReLU6,
    nn.Hardswish: nnq.Hardswish,
    nn.LeakyReLU: nnq.LeakyReLU,
    nn.Dropout: nnq.Dropout,
    nn.Embedding: nnq.Embedding,
    nn.EmbeddingBag: nnq.EmbeddingBag,
    nnq.FloatFunctional: nnq.QFunctional,
    nni.LinearReLU: nniq.LinearReLU,
    nni.ConvReLU1d: nniq.ConvReLU1d,
    nni.ConvReLU2d: nniq.ConvReLU2d,
    # QAT modules convert to the same quantized modules
    nnqat.Linear: nnq.Linear,
    nnqat.Conv1d: nnq.Conv1d,
    nnqat.Conv2d: nnq.Conv2d,
    nniqat.LinearReLU: nniq.LinearReLU,
    nniqat.ConvReLU1d: nniq.ConvReLU1d,
    nniqat.ConvReLU2d: nniq.ConvReLU2d,
    nniqat.ConvBn1d: nnq.Conv1d,
    nniqat.ConvBn2d: nnq.Conv2d,
    nniqat.ConvBnReLU1d: nniq.ConvReLU1d,
    nniqat.ConvBnReLU2d: nniq.ConvReLU2d,
}

DEFAULT_QAT_MODULE_MAPPINGS = {
    nn.Linear: nnqat.Linear,
    nn.Conv1d: nnqat.Conv1d,
    nn.Conv2d: nnqat.Conv2d,
    nni.LinearReLU: nniqat.LinearReLU,
    nni.ConvReLU1d: nniqat.ConvReLU1d,
    nni.ConvReLU2d: nniqat.ConvReLU2d,
    nni.ConvBn1d: nniqat.ConvBn1d,
    nni.ConvBn2d: nniqat.ConvBn2d,
    nni.ConvBnReLU1d: nniqat.ConvBnReLU1d,
    nni.ConvBnReLU2d: nniqat.ConvBnReLU2d,
}

DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS = {
    nn.Linear: nnqd.Linear,
    nn.LSTM: nnqd.LSTM,
    nn.GRU: nnqd.GRU,
    nni.LinearReLU: nnqd.Linear,
    nn.Embedding: nnq.Embedding,  # weight-only (float_qparams_weight_only_qconfig), as torch
    nn.EmbeddingBag: nnq.EmbeddingBag,
}

# modules whose output an observer never watches (they are float-in / float-out or identity)
no_observer_set = {nn.Identity, DeQuantStub}


def get_default_static_quant_module_mappings() -> dict:
    """The float module class -> quantized module class pairs that :func:`convert` uses for static
    quantization (a new dict each call, safe to modify).
    """
    return dict(DEFAULT_STATIC_QUANT_MODULE_MAPPINGS)


def get_default_qat_module_mappings() -> dict:
    """The float module class -> quantization-aware-training module class pairs that
    :func:`prepare_qat` uses (a new dict each call).
    """
    return dict(DEFAULT_QAT_MODULE_MAPPINGS)


def get_default_dynamic_quant_module_mappings() -> dict:
    """The float module class -> dynamically quantized module class pairs that
    :func:`quantize_dynamic` uses (a new dict each call).
    """
    return dict(DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS)


def get_default_qconfig_propagation_list() -> set:
    """Module types that receive a qconfig from their parent (and so get observers)."""
    return (
        set(DEFAULT_STATIC_QUANT_MODULE_MAPPINGS)
        | set(DEFAULT_QAT_MODULE_MAPPINGS)
        | set(DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS)
    )


def get_default_compare_output_module_list() -> set:
    """Module types whose outputs the eager numeric suite logs
    (``ember.ao.ns._numeric_suite.compare_model_outputs``): the float, QAT, quantized and
    dynamic modules of the default maps, the stubs, and ``nn.Sequential``."""
    maps = (
        DEFAULT_STATIC_QUANT_MODULE_MAPPINGS,
        DEFAULT_QAT_MODULE_MAPPINGS,
        DEFAULT_DYNAMIC_QUANT_MODULE_MAPPINGS,
    )
    types = {t for m in maps for t in (*m, *m.values())}
    # torch's list also names the float modules quantized kernels exist for
    names = (
        "Conv3d ConvTranspose1d ConvTranspose2d ConvTranspose3d BatchNorm2d BatchNorm3d "
        "InstanceNorm1d InstanceNorm2d InstanceNorm3d GroupNorm LayerNorm Embedding "
        "EmbeddingBag ELU PReLU LSTMCell GRUCell RNNCell"
    )
    extra = {getattr(pkg, n) for n in names.split() for pkg in (nn, nnq) if hasattr(pkg, n)}
    return types | extra | {nn.Sequential, QuantStub, DeQuantStub, nnq.Quantize, nnq.DeQuantize}
