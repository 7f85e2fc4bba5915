"""Quantizable ShuffleNet V2 (torchvision.models.quantization.shufflenetv2)."""

from __future__ import annotations

from typing import Any

from ember import nn
from ember.ao.quantization import DeQuantStub, QuantStub
from ember.tensor import Tensor

from .. import shufflenetv2 as _float
from .._api import WeightsEnum, handle_legacy_interface
from ..shufflenetv2 import (
    ShuffleNet_V2_X0_5_Weights,
    ShuffleNet_V2_X1_0_Weights,
    ShuffleNet_V2_X1_5_Weights,
    ShuffleNet_V2_X2_0_Weights,
)
from ._weights import qweights
from .utils import _builder_kwargs, _fuse_modules, _legacy, _quantizable_builder

__all__ = [
    "QuantizableShuffleNetV2",
    "ShuffleNet_V2_X0_5_QuantizedWeights",
    "ShuffleNet_V2_X1_0_QuantizedWeights",
    "ShuffleNet_V2_X1_5_QuantizedWeights",
    "ShuffleNet_V2_X2_0_QuantizedWeights",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]


class QuantizableInvertedResidual(_float.InvertedResidual):
    """The ShuffleNet unit with its concatenation in a ``FloatFunctional``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cat = nn.quantized.FloatFunctional()

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = self.cat.cat([x1, self.branch2(x2)], dim=1)
        else:
            out = self.cat.cat([self.branch1(x), self.branch2(x)], dim=1)
        return _float.channel_shuffle(out, 2)


class QuantizableShuffleNetV2(_float.ShuffleNetV2):
    """:class:`~ember.vision.models.ShuffleNetV2` between quant / dequant stubs, with
    ``fuse_model``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, inverted_residual=QuantizableInvertedResidual, **kwargs)
        self.quant = QuantStub()
        self.dequant = DeQuantStub()

    def forward(self, x: Tensor) -> Tensor:
        return self.dequant(self._forward_impl(self.quant(x)))

    def fuse_model(self, is_qat: bool | None = None) -> None:
        """Fuse conv + bn (+ ReLU) in the stem, the head and both branches of each unit."""
        for name, m in self._modules.items():
            if name in ("conv1", "conv5") and m is not None:
                _fuse_modules(m, [["0", "1", "2"]], is_qat, inplace=True)
        for m in self.modules():
            if type(m) is QuantizableInvertedResidual:
                if len(m.branch1._modules) > 0:
                    _fuse_modules(m.branch1, [["0", "1"], ["2", "3", "4"]], is_qat, inplace=True)
                groups = [["0", "1", "2"], ["3", "4"], ["5", "6", "7"]]
                _fuse_modules(m.branch2, groups, is_qat, inplace=True)


def _shufflenetv2(repeats, channels, weights, progress: bool, quantize: bool, **kwargs: Any):
    backend = _builder_kwargs(weights, kwargs)
    model = QuantizableShuffleNetV2(repeats, channels, **kwargs)
    return _quantizable_builder(model, weights, progress, quantize, backend)


def _q(name: str, n: int, unquantized, resize_size: int = 256):
    return qweights(name, n, unquantized, resize_size=resize_size)


class ShuffleNet_V2_X0_5_QuantizedWeights(WeightsEnum):
    """torchvision's post-training-quantized ShuffleNet V2 x0.5 (FBGEMM)."""

    IMAGENET1K_FBGEMM_V1 = _q(
        "shufflenetv2_x0.5_fbgemm-00845098", 1366792, ShuffleNet_V2_X0_5_Weights.IMAGENET1K_V1
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


class ShuffleNet_V2_X1_0_QuantizedWeights(WeightsEnum):
    """torchvision's post-training-quantized ShuffleNet V2 x1.0 (FBGEMM)."""

    IMAGENET1K_FBGEMM_V1 = _q(
        "shufflenetv2_x1_fbgemm-1e62bb32", 2278604, ShuffleNet_V2_X1_0_Weights.IMAGENET1K_V1
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


class ShuffleNet_V2_X1_5_QuantizedWeights(WeightsEnum):
    """torchvision's post-training-quantized ShuffleNet V2 x1.5 (FBGEMM)."""

    IMAGENET1K_FBGEMM_V1 = _q(
        "shufflenetv2_x1_5_fbgemm-d7401f05", 3503624, ShuffleNet_V2_X1_5_Weights.IMAGENET1K_V1, 232
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


class ShuffleNet_V2_X2_0_QuantizedWeights(WeightsEnum):
    """torchvision's post-training-quantized ShuffleNet V2 x2.0 (FBGEMM)."""

    IMAGENET1K_FBGEMM_V1 = _q(
        "shufflenetv2_x2_0_fbgemm-5cac526c", 7393996, ShuffleNet_V2_X2_0_Weights.IMAGENET1K_V1, 232
    )
    DEFAULT = IMAGENET1K_FBGEMM_V1


def _builder(name: str, qenum, fenum, repeats, channels):
    def build(*, weights=None, progress: bool = True, quantize: bool = False, **kwargs: Any):
        weights = (qenum if quantize else fenum).verify(weights)
        return _shufflenetv2(repeats, channels, weights, progress, quantize, **kwargs)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = (
        f"Quantizable ShuffleNet V2 with {name[-3]}.{name[-1]}x output channels; "
        "``quantize=True`` returns the int8 model."
    )
    return handle_legacy_interface(_legacy(qenum, fenum))(build)


shufflenet_v2_x0_5 = _builder(
    "shufflenet_v2_x0_5",
    ShuffleNet_V2_X0_5_QuantizedWeights,
    ShuffleNet_V2_X0_5_Weights,
    [4, 8, 4],
    [24, 48, 96, 192, 1024],
)
shufflenet_v2_x1_0 = _builder(
    "shufflenet_v2_x1_0",
    ShuffleNet_V2_X1_0_QuantizedWeights,
    ShuffleNet_V2_X1_0_Weights,
    [4, 8, 4],
    [24, 116, 232, 464, 1024],
)
shufflenet_v2_x1_5 = _builder(
    "shufflenet_v2_x1_5",
    ShuffleNet_V2_X1_5_QuantizedWeights,
    ShuffleNet_V2_X1_5_Weights,
    [4, 8, 4],
    [24, 176, 352, 704, 1024],
)
shufflenet_v2_x2_0 = _builder(
    "shufflenet_v2_x2_0",
    ShuffleNet_V2_X2_0_QuantizedWeights,
    ShuffleNet_V2_X2_0_Weights,
    [4, 8, 4],
    [24, 244, 488, 976, 2048],
)
