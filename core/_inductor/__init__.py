"""``ember._inductor`` (torch._inductor): the names programs touch around ``ember.compile``.

ember has one compiler (``ember/_compile``), with no code generation cache on disk:
``utils.fresh_inductor_cache()`` is a context manager with nothing to isolate, and ``config``
accepts Inductor's settings (``config.freezing = True``, ...) and records them without effect.
AOTInductor's ``aoti_compile_and_package`` / ``aoti_load_package`` (and the older
``aot_compile`` with ``ember._export.aot_load``) package an exported program (``_aoti.py``).
"""

from . import config, pattern_matcher, utils
from ._aoti import aot_compile, aoti_compile_and_package, aoti_load_package

__all__ = [
    "aot_compile",
    "aoti_compile_and_package",
    "aoti_load_package",
    "config",
    "pattern_matcher",
    "utils",
]
