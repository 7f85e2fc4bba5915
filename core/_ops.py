"""``ember._ops`` (torch._ops): the operator classes, for ``isinstance`` tests and annotations.

ember's operators are ``ember.ops.aten.<name>.<overload>`` (``library/_namespace.py``) and the
custom ops of ``ember.library`` (``library/_custom_op.py``); ``OpOverload`` and
``OpOverloadPacket`` here are abstract classes both register with, so
``isinstance(node.target, torch._ops.OpOverload)`` holds for either kind.
"""

from __future__ import annotations

import abc
from typing import Any

from . import ops
from .library import _custom_op, _namespace

__all__ = ["HigherOrderOperator", "OpOverload", "OpOverloadPacket", "ops"]


class OpOverload(abc.ABC):  # noqa: B024 -- a marker base, as torch's class is to callers
    """One overload of an operator (``ember.ops.aten.mm.default``)."""


class OpOverloadPacket(abc.ABC):  # noqa: B024
    """An operator with its overloads as attributes (``ember.ops.aten.mm``)."""


OpOverload.register(_namespace.AtenOverload)
OpOverload.register(_custom_op.OpOverload)
OpOverloadPacket.register(_namespace.AtenPacket)
OpOverloadPacket.register(_custom_op.OpOverloadPacket)


class HigherOrderOperator:
    """The base class of torch's higher-order operators (``cond``, ``while_loop``): ember's are
    plain functions (``ember._higher_order_ops``), so nothing is an instance of it; subclasses
    name themselves and implement ``__call__``."""

    def __init__(self, name: str, *, cacheable: bool = False) -> None:
        self._name = name
        self.__name__ = name

    def name(self) -> str:
        return self._name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"higher-order operator {self._name!r} has no implementation")
