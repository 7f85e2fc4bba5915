"""``ember.ao.nn``: quantized, dynamic, QAT and fused (intrinsic) layers."""

from . import intrinsic, qat, quantized
from .quantized import dynamic

__all__ = ["intrinsic", "qat", "quantized"]
