"""``ember._inductor`` (torch._inductor): the names programs touch around ``ember.compile``.

ember has one compiler (``ember/_compile``), with no code generation cache on disk:
``utils.fresh_inductor_cache()`` is a context manager with nothing to isolate, and ``config``
accepts Inductor's settings (``config.freezing = True``, ...) and records them without effect.
"""

from . import config, utils

__all__ = ["config", "utils"]
