"""A module loader that runs a callback once the real loader has executed the module: how ember
registers itself in a third-party library's tables when that library is imported after ember
(einops' backends, opt_einsum's dispatch; see core/_einops.py, core/_opt_einsum.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["AfterExecLoader"]


class AfterExecLoader:
    """Wraps a module's own loader; ``after(module)`` runs when the module has executed."""

    def __init__(self, loader: Any, after: Callable[[Any], None]) -> None:
        self._loader = loader
        self._after = after

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)  # the import system has put it in sys.modules
        self._after(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... for tracebacks
        return getattr(self._loader, name)
