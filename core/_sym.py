"""``torch.sym_*`` on plain Python numbers, and ``torch.OutOfMemoryError``.

PyTorch's ``sym_int``, ``sym_max`` ... let shape arithmetic stay symbolic under
``torch.compile``/``torch.export``; in eager code they are the plain operations. ember's
compile capture already keeps ``min``/``max`` of sizes symbolic by patching the builtins while
it traces (core/_compile/_capture.py), so these look the builtins up at call time and inherit
that.
"""

from __future__ import annotations

import builtins
import math

__all__ = [
    "OutOfMemoryError",
    "sym_float",
    "sym_int",
    "sym_ite",
    "sym_max",
    "sym_min",
    "sym_not",
    "sym_sqrt",
    "sym_sum",
]


class OutOfMemoryError(RuntimeError):
    """A device ran out of memory (``torch.OutOfMemoryError``, also ``ember.cuda.
    OutOfMemoryError``)."""


def sym_int(a):
    """``int(a)`` truncating toward zero, as ``torch.sym_int``."""
    return a if isinstance(a, int) else int(math.trunc(a))


def sym_float(a):
    """``float(a)``."""
    return float(a)


def sym_max(a, b):
    """``max(a, b)`` (symbolic while ember.compile traces sizes)."""
    return builtins.max(a, b)


def sym_min(a, b):
    """``min(a, b)`` (symbolic while ember.compile traces sizes)."""
    return builtins.min(a, b)


def sym_not(a):
    """``not a``."""
    return not a


def sym_sqrt(a):
    """``math.sqrt(a)``."""
    return math.sqrt(a)


def sym_ite(b, t, f):
    """``t if b else f``."""
    return t if b else f


def sym_sum(args):
    """``sum(args)``, starting from 0."""
    return builtins.sum(args)
