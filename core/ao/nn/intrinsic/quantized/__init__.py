"""``nn.intrinsic.quantized``: quantized layers with the ReLU fused in (clamp at the output
zero point inside the requantization)."""

from __future__ import annotations

from ...quantized.modules.conv import Conv1d as _QConv1d
from ...quantized.modules.conv import Conv2d as _QConv2d
from ...quantized.modules.linear import Linear as _QLinear

__all__ = ["LinearReLU", "ConvReLU1d", "ConvReLU2d"]


class LinearReLU(_QLinear):
    """Quantized Linear + ReLU (from ``nn.intrinsic.LinearReLU``)."""

    _RELU = True

    def _get_name(self) -> str:
        return "QuantizedLinearReLU"


class ConvReLU1d(_QConv1d):
    """Quantized Conv1d + ReLU."""

    _RELU = True
    _NAME = "QuantizedConvReLU1d"


class ConvReLU2d(_QConv2d):
    """Quantized Conv2d + ReLU."""

    _RELU = True
    _NAME = "QuantizedConvReLU2d"
