"""torch's ``torch.utils.data._utils`` paths (``from torch.utils.data._utils.collate import
default_collate``, as fastai does).

The modules live one level up in ember; this one-file module registers them under torch's
names so both import paths give the same module objects.
"""

import sys

from . import _pin_memory, _worker, collate

fetch = _worker  # the dataset fetchers live in _worker.py
worker = _worker
pin_memory = _pin_memory

for _name, _mod in (
    ("collate", collate),
    ("fetch", fetch),
    ("worker", worker),
    ("pin_memory", pin_memory),
):
    sys.modules[f"{__name__}.{_name}"] = _mod

__all__ = ["collate", "fetch", "pin_memory", "worker"]
