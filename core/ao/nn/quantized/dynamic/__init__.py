"""``nn.quantized.dynamic``: float in / float out layers with int8 weights; activations are
quantized per call from their own range."""

from .modules import GRU, LSTM, Linear

__all__ = ["Linear", "LSTM", "GRU"]
