"""A module loader that runs a callback once the real loader has executed the module: how ember
registers itself in a third-party library's tables when that library is imported after ember
(einops' backends, opt_einsum's dispatch; see core/_einops.py, core/_opt_einsum.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = ["AfterExecLoader", "spec_from_later_finders"]


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


def spec_from_later_finders(finder: Any, fullname: str, path=None, target=None):
    """The spec the ``sys.meta_path`` finders after ``finder`` give ``fullname`` (the module
    as it would import without ember's finder), or None."""
    finders = sys.meta_path
    start = finders.index(finder) + 1 if finder in finders else 0
    for later in finders[start:]:
        find_spec = getattr(later, "find_spec", None)
        spec = find_spec(fullname, path, target) if find_spec is not None else None
        if spec is not None:
            return spec
    return None
