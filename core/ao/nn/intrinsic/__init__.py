"""``nn.intrinsic``: fused float modules; ``.quantized`` and ``.qat`` hold their quantized and
QAT forms (torch.ao.nn.intrinsic's layout)."""

from .modules import (
    BNReLU2d,
    ConvBn1d,
    ConvBn2d,
    ConvBnReLU1d,
    ConvBnReLU2d,
    ConvReLU1d,
    ConvReLU2d,
    LinearBn1d,
    LinearReLU,
    _FusedModule,
)

__all__ = [
    "BNReLU2d",
    "ConvBn1d",
    "ConvBn2d",
    "ConvBnReLU1d",
    "ConvBnReLU2d",
    "ConvReLU1d",
    "ConvReLU2d",
    "LinearBn1d",
    "LinearReLU",
    "_FusedModule",
]
