"""The exporter's errors (``torch.onnx.errors``)."""

from . import OnnxExporterError, UnsupportedOperatorError

__all__ = ["OnnxExporterError", "UnsupportedOperatorError"]
