"""``ember.vision``: torchvision's API on ember — ``transforms``, ``datasets``, ``models``, ``ops``
and ``tv_tensors``, ``io``.

Images are PIL images (Pillow, the ``vision`` extra) or ember tensors ``(..., C, H, W)``.
See ``docs/vision.md``.
"""

from __future__ import annotations

import importlib

__all__ = ["transforms", "datasets", "models", "ops", "tv_tensors", "utils", "io"]

# torchvision's release for torch 2.13, tagged like ember.__version__ ("2.13.0+ember.X")
__version__ = "0.28.0+" + __import__("ember").__version__.partition("+")[2]


def __getattr__(name: str):
    # Lazy: ``import ember.vision`` stays cheap; each part loads on first use.
    if name in __all__:
        return importlib.import_module(f"ember.vision.{name}")
    raise AttributeError(f"module 'ember.vision' has no attribute {name!r}")
