"""``ember.backends.quantized``: the quantized engine, as ``torch.backends.quantized``.

torch picks its int8 kernels by engine (FBGEMM / x86 / oneDNN on servers, QNNPACK on
phones). ember's int8 kernels are one NumPy implementation of the same arithmetic, so the
engine does not change which kernel runs; it is kept because programs read and set it (for
example before ``get_default_qconfig(torch.backends.quantized.engine)``), and an unknown
name is refused as torch refuses it.
"""

from __future__ import annotations

import sys
import types

__all__ = ["engine", "supported_engines"]  # noqa: F822 (engine: a module property)

supported_engines = ["qnnpack", "onednn", "x86", "fbgemm", "none"]
_engine = "x86"


class _QuantizedModule(types.ModuleType):
    @property
    def engine(self) -> str:
        """The selected engine (``"x86"`` by default, as torch's x86 builds)."""
        return _engine

    @engine.setter
    def engine(self, name: str) -> None:
        global _engine
        if name not in supported_engines:
            raise RuntimeError(f"{name} is not a valid value for quantized engine")
        _engine = name


sys.modules[__name__].__class__ = _QuantizedModule
