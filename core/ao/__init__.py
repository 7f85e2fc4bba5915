"""``ember.ao``: architecture optimization; today quantization (``ember.ao.quantization``,
``ember.ao.nn.quantized`` ...), torch.ao's layout."""

from . import nn, quantization

__all__ = ["nn", "quantization"]
