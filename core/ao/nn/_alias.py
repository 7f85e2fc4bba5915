"""Register a package's loaded submodules under an alias name too, so ``import
ember.nn.quantized.dynamic`` yields the very module ``ember.ao.nn.quantized.dynamic`` (one set
of classes, whatever path imported them)."""

from __future__ import annotations

import importlib
import pkgutil
import sys


def alias_package(alias: str, package) -> None:
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        mod = importlib.import_module(info.name)
        sys.modules[alias + info.name[len(package.__name__) :]] = mod
