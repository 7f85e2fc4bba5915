"""Fused float modules (what ``fuse_modules`` produces): sequential containers that prepare /
convert treat as one layer (``nn.intrinsic.ConvReLU2d`` etc., torch's names)."""

from __future__ import annotations

from .....nn.modules.activation import ReLU
from .....nn.modules.container import Sequential
from .....nn.modules.conv import Conv1d, Conv2d
from .....nn.modules.linear import Linear
from .....nn.modules.normalization import BatchNorm1d, BatchNorm2d

__all__ = [
    "_FusedModule",
    "ConvReLU1d",
    "ConvReLU2d",
    "LinearReLU",
    "ConvBn1d",
    "ConvBn2d",
    "ConvBnReLU1d",
    "ConvBnReLU2d",
    "LinearBn1d",
    "BNReLU2d",
]


class _FusedModule(Sequential):
    """Base of the fused containers; each checks the types it is built from."""

    _PARTS: tuple = ()

    def __init__(self, *mods):
        if len(mods) != len(self._PARTS) or not all(
            isinstance(m, t) for m, t in zip(mods, self._PARTS)
        ):
            raise AssertionError(
                f"Incorrect types for input modules{tuple(type(m).__name__ for m in mods)}; "
                f"{type(self).__name__} expects "
                f"{tuple(t.__name__ for t in self._PARTS)}"
            )
        super().__init__(*mods)


def _fused(name: str, parts: tuple, doc: str):
    return type(name, (_FusedModule,), {"_PARTS": parts, "__doc__": doc, "__module__": __name__})


ConvReLU1d = _fused("ConvReLU1d", (Conv1d, ReLU), "Conv1d followed by ReLU.")
ConvReLU2d = _fused("ConvReLU2d", (Conv2d, ReLU), "Conv2d followed by ReLU.")
LinearReLU = _fused("LinearReLU", (Linear, ReLU), "Linear followed by ReLU.")
ConvBn1d = _fused("ConvBn1d", (Conv1d, BatchNorm1d), "Conv1d followed by BatchNorm1d (QAT).")
ConvBn2d = _fused("ConvBn2d", (Conv2d, BatchNorm2d), "Conv2d followed by BatchNorm2d (QAT).")
ConvBnReLU1d = _fused(
    "ConvBnReLU1d", (Conv1d, BatchNorm1d, ReLU), "Conv1d, BatchNorm1d and ReLU (QAT)."
)
ConvBnReLU2d = _fused(
    "ConvBnReLU2d", (Conv2d, BatchNorm2d, ReLU), "Conv2d, BatchNorm2d and ReLU (QAT)."
)
LinearBn1d = _fused("LinearBn1d", (Linear, BatchNorm1d), "Linear followed by BatchNorm1d (QAT).")
BNReLU2d = _fused("BNReLU2d", (BatchNorm2d, ReLU), "BatchNorm2d followed by ReLU.")
