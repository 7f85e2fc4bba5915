"""QAT layers: float layers whose weight passes through a fake quantizer in forward."""

from __future__ import annotations

from .....nn import functional as F
from .....nn.modules.conv import Conv1d as _Conv1d
from .....nn.modules.conv import Conv2d as _Conv2d
from .....nn.modules.linear import Linear as _Linear
from .....nn.parameter import Parameter

__all__ = ["Linear", "Conv1d", "Conv2d"]


def _need_qconfig(cls, qconfig):
    if qconfig is None:
        raise AssertionError(f"{cls.__name__}: qconfig must be provided for a QAT module")


def _copy_params(dst, src) -> None:
    dst.weight = Parameter(src.weight.detach().clone(), src.weight.requires_grad)
    if src.bias is not None:
        dst.bias = Parameter(src.bias.detach().clone(), src.bias.requires_grad)


class Linear(_Linear):
    """``nn.Linear`` with fake-quantized weights (``weight_fake_quant``) for QAT."""

    _FLOAT_MODULE = _Linear

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        qconfig=None,
        device=None,
        dtype=None,
    ):
        super().__init__(in_features, out_features, bias)
        _need_qconfig(type(self), qconfig)
        self.qconfig = qconfig
        self.weight_fake_quant = qconfig.weight()

    def forward(self, input):
        return F.linear(input, self.weight_fake_quant(self.weight), self.bias)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        from ...intrinsic.modules.fused import _FusedModule

        if getattr(mod, "qconfig", None) is None:
            raise AssertionError("Input float module must have qconfig defined")
        lin = mod[0] if isinstance(mod, _FusedModule) else mod
        q = cls(lin.in_features, lin.out_features, lin.bias is not None, qconfig=mod.qconfig)
        _copy_params(q, lin)
        return q

    def to_float(self):
        lin = _Linear(self.in_features, self.out_features, self.bias is not None)
        _copy_params(lin, self)
        return lin


class _QatConv:
    _FLOAT: type = None

    def _init_qat(self, qconfig):
        _need_qconfig(type(self), qconfig)
        self.qconfig = qconfig
        self.weight_fake_quant = qconfig.weight()

    def forward(self, input):
        return self._conv_forward(input, self.weight_fake_quant(self.weight), self.bias)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        from ...intrinsic.modules.fused import _FusedModule

        if getattr(mod, "qconfig", None) is None:
            raise AssertionError("Input float module must have qconfig defined")
        c = mod[0] if isinstance(mod, _FusedModule) else mod
        q = cls(
            c.in_channels,
            c.out_channels,
            c.kernel_size,
            c.stride,
            c.padding,
            c.dilation,
            c.groups,
            c.bias is not None,
            c.padding_mode,
            qconfig=mod.qconfig,
        )
        _copy_params(q, c)
        return q

    def to_float(self):
        c = self._FLOAT(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.bias is not None,
            self.padding_mode,
        )
        _copy_params(c, self)
        return c


class Conv1d(_QatConv, _Conv1d):
    """``nn.Conv1d`` with fake-quantized weights for QAT."""

    _FLOAT_MODULE = _FLOAT = _Conv1d

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        qconfig=None,
        device=None,
        dtype=None,
    ):
        _Conv1d.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
        )
        self._init_qat(qconfig)


class Conv2d(_QatConv, _Conv2d):
    """``nn.Conv2d`` with fake-quantized weights for QAT."""

    _FLOAT_MODULE = _FLOAT = _Conv2d

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=True,
        padding_mode="zeros",
        qconfig=None,
        device=None,
        dtype=None,
    ):
        _Conv2d.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bias,
            padding_mode,
        )
        self._init_qat(qconfig)
