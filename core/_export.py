"""``ember._export`` (torch._export): the older AOTInductor loader, ``aot_load``
(``ember._inductor._aoti``), and ``aot_compile``."""

from ._inductor._aoti import aot_compile, aot_load

__all__ = ["aot_compile", "aot_load"]
