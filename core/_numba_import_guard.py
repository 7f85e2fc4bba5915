"""Import numba with Python's own ``print`` in place.

ember imports numba lazily, the first time a compiled kernel is wanted. numba's import
registers typing for the builtins and checks each one against the module that its
``__module__`` names; distributed training scripts commonly replace ``builtins.print`` with a
function of their own that silences non-master ranks (torchvision's ``references/``
``utils.setup_for_distributed``, DeiT, MAE, ...), and numba's check then fails with
``module 'utils' has no attribute 'print'``. torch never imports numba, so those scripts work
there; this finder puts the real ``print`` back while numba's package initializes (it stays
on ``sys.meta_path`` only until numba is imported, and answers ``None`` for everything else).
"""

from __future__ import annotations

import builtins
import importlib.abc
import sys

from ._post_import import spec_from_later_finders

_BUILTIN_PRINT = builtins.print


class _RealPrintLoader(importlib.abc.Loader):
    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        saved = builtins.print
        builtins.print = _BUILTIN_PRINT
        try:
            self._loader.exec_module(module)
        finally:
            builtins.print = saved

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class _NumbaFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "numba":
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)  # one use: numba imports once
        spec = spec_from_later_finders(self, name, path, target)  # (self is off the list now)
        if spec is not None and spec.loader is not None:
            spec.loader = _RealPrintLoader(spec.loader)
        return spec


def install() -> None:
    """Put the finder on ``sys.meta_path`` unless numba is imported already."""
    if "numba" not in sys.modules and not any(isinstance(f, _NumbaFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _NumbaFinder())
