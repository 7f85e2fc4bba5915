"""``nn.qat``: layers for quantization-aware training (fake-quantized weights)."""

from .modules import Conv1d, Conv2d, Linear

__all__ = ["Linear", "Conv1d", "Conv2d"]
