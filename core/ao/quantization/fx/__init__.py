"""FX graph mode quantization's passes (``ember.ao.quantization.fx``): fusion, observer
insertion (``prepare``), lowering to int8 modules and ``quantized_ops`` (``convert``). The
public entry points are in ``ember.ao.quantization.quantize_fx``."""

from . import quantized_ops
from .convert import convert
from .fuse import fuse_graph
from .prepare import prepare

__all__ = ["convert", "fuse_graph", "prepare", "quantized_ops"]
