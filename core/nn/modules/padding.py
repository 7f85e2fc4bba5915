"""Padding layers: zero, constant, reflection, replication and circular, in 1, 2 and 3 dims."""

from __future__ import annotations

from ...tensor import Tensor
from .. import functional as F
from ..module import Module

__all__ = [
    "ZeroPad1d",
    "ZeroPad2d",
    "ZeroPad3d",
    "ConstantPad1d",
    "ConstantPad2d",
    "ConstantPad3d",
    "ReflectionPad1d",
    "ReflectionPad2d",
    "ReflectionPad3d",
    "ReplicationPad1d",
    "ReplicationPad2d",
    "ReplicationPad3d",
    "CircularPad1d",
    "CircularPad2d",
    "CircularPad3d",
]


def _expand(padding, nd: int) -> tuple[int, ...]:
    """An int pads every side; otherwise (left, right[, top, bottom[, front, back]])."""
    if isinstance(padding, (list, tuple)):
        if len(padding) != 2 * nd:
            raise ValueError(
                f"expected padding to be an int or a tuple of {2 * nd} ints, got {tuple(padding)}"
            )
        return tuple(padding)
    return (padding,) * (2 * nd)


class _ConstantPadNd(Module):
    _nd = 0

    def __init__(self, padding, value: float) -> None:
        super().__init__()
        self.padding = _expand(padding, self._nd)
        self.value = value

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, "constant", self.value)

    def extra_repr(self) -> str:
        return f"padding={self.padding}, value={self.value}"


class ConstantPad1d(_ConstantPadNd):
    r"""Pads the last dimension with ``value``; padding: int or (left, right)."""

    _nd = 1


class ConstantPad2d(_ConstantPadNd):
    r"""Pads the last 2 dimensions with ``value``; padding: int or (left, right, top, bottom)."""

    _nd = 2


class ConstantPad3d(_ConstantPadNd):
    r"""Pads the last 3 dimensions with ``value``; padding: int or a 6-tuple."""

    _nd = 3


class _ZeroPadNd(_ConstantPadNd):
    def __init__(self, padding) -> None:
        super().__init__(padding, 0.0)

    def extra_repr(self) -> str:
        return f"{self.padding}"


class ZeroPad1d(_ZeroPadNd):
    r"""Pads the last dimension with zeros; padding: int or (left, right)."""

    _nd = 1


class ZeroPad2d(_ZeroPadNd):
    r"""Pads the last 2 dimensions with zeros; padding: int or (left, right, top, bottom)."""

    _nd = 2


class ZeroPad3d(_ZeroPadNd):
    r"""Pads the last 3 dimensions with zeros; padding: int or a 6-tuple."""

    _nd = 3


class _IndexPadNd(Module):
    _nd = 0
    _mode = ""

    def __init__(self, padding) -> None:
        super().__init__()
        self.padding = _expand(padding, self._nd)

    def forward(self, input: Tensor) -> Tensor:
        return F.pad(input, self.padding, self._mode)

    def extra_repr(self) -> str:
        return f"{self.padding}"


# torch's private family bases: FLOPs counters (thop) register rules on them
class _ReflectionPadNd(_IndexPadNd):
    _mode = "reflect"


class _ReplicationPadNd(_IndexPadNd):
    _mode = "replicate"


class _CircularPadNd(_IndexPadNd):
    _mode = "circular"


class ReflectionPad1d(_ReflectionPadNd):
    r"""Pads the last dimension with the reflection of the input (edge not repeated)."""

    _nd, _mode = 1, "reflect"


class ReflectionPad2d(_ReflectionPadNd):
    r"""Pads the last 2 dimensions with the reflection of the input."""

    _nd, _mode = 2, "reflect"


class ReflectionPad3d(_ReflectionPadNd):
    r"""Pads the last 3 dimensions with the reflection of the input."""

    _nd, _mode = 3, "reflect"


class ReplicationPad1d(_ReplicationPadNd):
    r"""Pads the last dimension by repeating the edge values."""

    _nd, _mode = 1, "replicate"


class ReplicationPad2d(_ReplicationPadNd):
    r"""Pads the last 2 dimensions by repeating the edge values."""

    _nd, _mode = 2, "replicate"


class ReplicationPad3d(_ReplicationPadNd):
    r"""Pads the last 3 dimensions by repeating the edge values."""

    _nd, _mode = 3, "replicate"


class CircularPad1d(_CircularPadNd):
    r"""Pads the last dimension by wrapping the input around."""

    _nd, _mode = 1, "circular"


class CircularPad2d(_CircularPadNd):
    r"""Pads the last 2 dimensions by wrapping the input around."""

    _nd, _mode = 2, "circular"


class CircularPad3d(_CircularPadNd):
    r"""Pads the last 3 dimensions by wrapping the input around."""

    _nd, _mode = 3, "circular"
