"""Pooling layers: max, average and adaptive pooling in 1, 2 and 3 dimensions."""

from __future__ import annotations

from ...tensor import Tensor
from .. import functional as F
from ..module import Module
from .utils import _functional

__all__ = [
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
]


class _MaxPoolNd(Module):
    _fn = None

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        dilation=1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.dilation = padding, dilation
        self.return_indices, self.ceil_mode = return_indices, ceil_mode

    def forward(self, input: Tensor):
        return type(self)._fn(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            ceil_mode=self.ceil_mode,
            return_indices=self.return_indices,
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class MaxPool1d(_MaxPoolNd):
    r"""1D max pooling over (N, C, L) or (C, L).

    Args:
        kernel_size, stride (default: kernel_size), padding, dilation: window geometry.
        return_indices: also return the argmax positions (flat indices in each plane).
        ceil_mode: use ceil instead of floor for the output size.
    """

    _fn = _functional("max_pool1d")


class MaxPool2d(_MaxPoolNd):
    r"""2D max pooling over (N, C, H, W) or (C, H, W); arguments as :class:`MaxPool1d`."""

    _fn = _functional("max_pool2d")


class MaxPool3d(_MaxPoolNd):
    r"""3D max pooling over (N, C, D, H, W) or (C, D, H, W); arguments as :class:`MaxPool1d`."""

    _fn = _functional("max_pool3d")


class AvgPool1d(Module):
    r"""1D average pooling over (N, C, L) or (C, L).

    Args:
        kernel_size, stride (default: kernel_size), padding: window geometry.
        ceil_mode: use ceil instead of floor for the output size.
        count_include_pad: count the zero padding in the averaging divisor.
    """

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
    ) -> None:
        super().__init__()
        self.kernel_size = _single(kernel_size)
        self.stride = _single(stride if stride is not None else kernel_size)
        self.padding = _single(padding)
        self.ceil_mode, self.count_include_pad = ceil_mode, count_include_pad

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool1d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


def _single(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v,)


class _AvgPoolNd(Module):
    _fn = None

    def __init__(
        self,
        kernel_size,
        stride=None,
        padding=0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding, self.ceil_mode = padding, ceil_mode
        self.count_include_pad, self.divisor_override = count_include_pad, divisor_override

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(_AvgPoolNd):
    r"""2D average pooling over (N, C, H, W) or (C, H, W).

    Args:
        kernel_size, stride (default: kernel_size), padding: window geometry.
        ceil_mode: use ceil instead of floor for the output size.
        count_include_pad: count the zero padding in the averaging divisor.
        divisor_override: if given, the divisor of every window.
    """

    _fn = _functional("avg_pool2d")


class AvgPool3d(_AvgPoolNd):
    r"""3D average pooling over (N, C, D, H, W) or (C, D, H, W); as :class:`AvgPool2d`."""

    _fn = _functional("avg_pool3d")


class _AdaptivePool(Module):
    _fn = None

    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(input, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"


class _AdaptiveAvgPoolNd(_AdaptivePool):
    """torch's base of the adaptive average pools (FLOPs counters such as thop test for it)."""


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    r"""1D adaptive average pooling to ``output_size`` over (N, C, L) or (C, L)."""

    _fn = _functional("adaptive_avg_pool1d")


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    r"""2D adaptive average pooling to ``output_size`` (int, pair, None keeps that size)."""

    _fn = _functional("adaptive_avg_pool2d")


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    r"""3D adaptive average pooling to ``output_size`` (int, triple, None keeps that size)."""

    _fn = _functional("adaptive_avg_pool3d")


class _AdaptiveMaxPool(_AdaptivePool):
    def __init__(self, output_size, return_indices: bool = False) -> None:
        super().__init__(output_size)
        self.return_indices = return_indices

    def forward(self, input: Tensor):
        return type(self)._fn(input, self.output_size, self.return_indices)


class AdaptiveMaxPool1d(_AdaptiveMaxPool):
    r"""1D adaptive max pooling to ``output_size``, optionally returning the indices."""

    _fn = _functional("adaptive_max_pool1d")


class AdaptiveMaxPool2d(_AdaptiveMaxPool):
    r"""2D adaptive max pooling to ``output_size``, optionally returning the indices."""

    _fn = _functional("adaptive_max_pool2d")


class AdaptiveMaxPool3d(_AdaptiveMaxPool):
    r"""3D adaptive max pooling to ``output_size``, optionally returning the indices."""

    _fn = _functional("adaptive_max_pool3d")


_AdaptiveMaxPoolNd = _AdaptiveMaxPool  # torch's name for the adaptive max pools' base

# torch keeps every pooling layer in ``nn.modules.pooling``; tools such as thop register rules on
# its private bases there (``nn.modules.pooling._MaxUnpoolNd``), so re-export the extra family.
from .pooling_extra import (  # noqa: E402, F401
    FractionalMaxPool2d,
    FractionalMaxPool3d,
    LPPool1d,
    LPPool2d,
    LPPool3d,
    MaxUnpool1d,
    MaxUnpool2d,
    MaxUnpool3d,
    _FractionalMaxPoolNd,
    _LPPoolNd,
    _MaxUnpoolNd,
)
