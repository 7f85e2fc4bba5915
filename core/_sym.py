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
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the annotations name Tensor: the __torch_function__ wrappers dispatch on
    from .tensor import Tensor  # tensor-likes there, as torch.sym_* do (core/_torch_function.py)

__all__ = [
    "OutOfMemoryError",
    "SymBool",
    "SymFloat",
    "SymInt",
    "sym_float",
    "sym_int",
    "sym_ite",
    "sym_max",
    "sym_min",
    "sym_not",
    "sym_sqrt",
    "sym_sum",
]


class _NeverMade:
    def __init__(self, *args, **kwargs):
        raise TypeError(
            f"ember.{type(self).__name__} cannot be instantiated: ember's sizes and shape "
            "values are plain Python numbers"
        )


class SymInt(_NeverMade):
    """``torch.SymInt``: a symbolic size under compile/export. ember's sizes are always Python
    ints (its capture patches the builtins instead), so none is ever made and
    ``isinstance(n, (int, ember.SymInt))`` is the plain ``int`` test."""


class SymFloat(_NeverMade):
    """``torch.SymFloat``: like :class:`SymInt`, never made (values are Python floats)."""


class SymBool(_NeverMade):
    """``torch.SymBool``: like :class:`SymInt`, never made (values are Python bools)."""


class OutOfMemoryError(RuntimeError):
    """A device ran out of memory (``torch.OutOfMemoryError``, also ``ember.cuda.
    OutOfMemoryError``)."""


def sym_int(a: Tensor | float):
    """``int(a)`` truncating toward zero, as ``torch.sym_int``."""
    return a if isinstance(a, int) else int(math.trunc(a))


def sym_float(a: Tensor | float):
    """``float(a)``."""
    return float(a)


def sym_max(a: Tensor | float, b: Tensor | float):
    """``max(a, b)`` (symbolic while ember.compile traces sizes)."""
    return builtins.max(a, b)


def sym_min(a: Tensor | float, b: Tensor | float):
    """``min(a, b)`` (symbolic while ember.compile traces sizes)."""
    return builtins.min(a, b)


def sym_not(a: Tensor | bool):
    """``not a``."""
    return not a


def sym_sqrt(a: Tensor | float):
    """``math.sqrt(a)``."""
    return math.sqrt(a)


def sym_ite(b: Tensor | bool, t: Tensor | float, f: Tensor | float):
    """``t if b else f``."""
    return t if b else f


def sym_sum(args: list[Tensor | float]):
    """``sum(args)``, starting from 0."""
    return builtins.sum(args)
