from .activation import (
    DeQuantize,
    Dropout,
    FloatFunctional,
    FXFloatFunctional,
    Hardswish,
    LeakyReLU,
    QFunctional,
    Quantize,
    ReLU6,
    Sigmoid,
)
from .conv import Conv1d, Conv2d
from .embedding_ops import Embedding, EmbeddingBag, EmbeddingPackedParams
from .linear import Linear, LinearPackedParams

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
]
