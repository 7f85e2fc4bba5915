"""More pooling layers: power-average (LP) pooling, max unpooling, fractional max pooling."""

from __future__ import annotations

from ...tensor import Tensor
from ..module import Module
from .utils import _functional

__all__ = [
    "LPPool1d",
    "LPPool2d",
    "LPPool3d",
    "MaxUnpool1d",
    "MaxUnpool2d",
    "MaxUnpool3d",
    "FractionalMaxPool2d",
    "FractionalMaxPool3d",
]


def _ntuple(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,) * n


class _LPPoolNd(Module):
    _fn = None

    def __init__(self, norm_type: float, kernel_size, stride=None, ceil_mode: bool = False) -> None:
        super().__init__()
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode

    def extra_repr(self) -> str:
        return (
            "norm_type={norm_type}, kernel_size={kernel_size}, stride={stride}, "
            "ceil_mode={ceil_mode}".format(**self.__dict__)
        )

    def forward(self, input: Tensor) -> Tensor:
        return type(self)._fn(
            input, float(self.norm_type), self.kernel_size, self.stride, self.ceil_mode
        )


class LPPool1d(_LPPoolNd):
    r"""1D power-average pooling :math:`(\sum x^p)^{1/p}` over (N, C, L) or (C, L)."""

    _fn = _functional("lp_pool1d")


class LPPool2d(_LPPoolNd):
    r"""2D power-average pooling over (N, C, H, W) or (C, H, W)."""

    _fn = _functional("lp_pool2d")


class LPPool3d(_LPPoolNd):
    r"""3D power-average pooling over (N, C, D, H, W) or (C, D, H, W)."""

    _fn = _functional("lp_pool3d")


class _MaxUnpoolNd(Module):
    _fn = None
    _nd = 0

    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        nd = self._nd
        self.kernel_size = _ntuple(kernel_size, nd)
        self.stride = _ntuple(stride if stride is not None else kernel_size, nd)
        self.padding = _ntuple(padding, nd)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"

    def forward(self, input: Tensor, indices: Tensor, output_size=None) -> Tensor:
        return type(self)._fn(
            input, indices, self.kernel_size, self.stride, self.padding, output_size
        )


class MaxUnpool1d(_MaxUnpoolNd):
    r"""Partial inverse of :class:`MaxPool1d`: values back at their argmax, zeros elsewhere."""

    _fn, _nd = _functional("max_unpool1d"), 1


class MaxUnpool2d(_MaxUnpoolNd):
    r"""Partial inverse of :class:`MaxPool2d`."""

    _fn, _nd = _functional("max_unpool2d"), 2


class MaxUnpool3d(_MaxUnpoolNd):
    r"""Partial inverse of :class:`MaxPool3d`."""

    _fn, _nd = _functional("max_unpool3d"), 3


class _FractionalMaxPoolNd(Module):
    _fn = None
    _nd = 0

    def __init__(
        self,
        kernel_size,
        output_size=None,
        output_ratio=None,
        return_indices: bool = False,
        _random_samples=None,
    ) -> None:
        super().__init__()
        nd = self._nd
        self.kernel_size = _ntuple(kernel_size, nd)
        self.return_indices = return_indices
        self.register_buffer("_random_samples", _random_samples)
        self.output_size = _ntuple(output_size, nd) if output_size is not None else None
        self.output_ratio = _ntuple(output_ratio, nd) if output_ratio is not None else None
        if output_size is None and output_ratio is None:
            raise ValueError(
                f"FractionalMaxPool{nd}d requires specifying either an output "
                "size, or a pooling ratio"
            )
        if output_size is not None and output_ratio is not None:
            raise ValueError("only one of output_size and output_ratio may be specified")
        if self.output_ratio is not None and not all(0 < r < 1 for r in self.output_ratio):
            raise ValueError(f"output_ratio must be between 0 and 1 (got {output_ratio})")

    def forward(self, input: Tensor):
        return type(self)._fn(
            input,
            self.kernel_size,
            self.output_size,
            self.output_ratio,
            self.return_indices,
            _random_samples=self._random_samples,
        )


class FractionalMaxPool2d(_FractionalMaxPoolNd):
    r"""2D fractional max pooling over (N, C, H, W) or (C, H, W)."""

    _fn, _nd = _functional("fractional_max_pool2d"), 2


class FractionalMaxPool3d(_FractionalMaxPoolNd):
    r"""3D fractional max pooling over (N, C, D, H, W) or (C, D, H, W)."""

    _fn, _nd = _functional("fractional_max_pool3d"), 3
