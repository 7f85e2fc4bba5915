"""``ember.backends.quantized``: the quantized engine. ember has no quantized kernels, so the
only engine is ``"none"``."""

from __future__ import annotations

__all__ = ["engine", "supported_engines"]

supported_engines = ["none"]
engine = "none"
