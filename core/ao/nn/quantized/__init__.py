"""``nn.quantized``: layers that take and return quantized tensors and compute in integers."""

from .modules import (
    Conv1d,
    Conv2d,
    DeQuantize,
    Dropout,
    Embedding,
    EmbeddingBag,
    EmbeddingPackedParams,
    FloatFunctional,
    FXFloatFunctional,
    Hardswish,
    LeakyReLU,
    Linear,
    LinearPackedParams,
    QFunctional,
    Quantize,
    ReLU6,
    Sigmoid,
)

__all__ = [
    "Conv1d",
    "Conv2d",
    "DeQuantize",
    "Dropout",
    "Embedding",
    "EmbeddingBag",
    "EmbeddingPackedParams",
    "FloatFunctional",
    "FXFloatFunctional",
    "Hardswish",
    "LeakyReLU",
    "Linear",
    "LinearPackedParams",
    "QFunctional",
    "Quantize",
    "ReLU6",
    "Sigmoid",
    "dynamic",
]


def __getattr__(name):
    if name == "dynamic":  # (dynamic imports this package's modules: load it on first use)
        import importlib

        return importlib.import_module(".dynamic", __name__)
    raise AttributeError(f"module 'ember.ao.nn.quantized' has no attribute {name!r}")
