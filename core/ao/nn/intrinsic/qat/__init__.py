"""``nn.intrinsic.qat``: fused layers for QAT. ``ConvBn*`` simulate the batch-norm folding that
convert will do (weights scaled by gamma / running_std before fake quantization, as torch)."""

from __future__ import annotations

from .....nn.modules.conv import Conv1d as _Conv1d
from .....nn.modules.conv import Conv2d as _Conv2d
from .....nn.modules.normalization import BatchNorm1d, BatchNorm2d
from .....nn.parameter import Parameter
from ....nn import qat as _qat
from ...intrinsic.modules.fused import _FusedModule

__all__ = [
    "LinearReLU",
    "ConvReLU1d",
    "ConvReLU2d",
    "ConvBn1d",
    "ConvBn2d",
    "ConvBnReLU1d",
    "ConvBnReLU2d",
    "freeze_bn_stats",
    "update_bn_stats",
]


class LinearReLU(_qat.Linear):
    """QAT Linear followed by ReLU (from ``nn.intrinsic.LinearReLU``)."""

    def forward(self, input):
        return super().forward(input).relu()


class ConvReLU1d(_qat.Conv1d):
    def forward(self, input):
        return super().forward(input).relu()


class ConvReLU2d(_qat.Conv2d):
    def forward(self, input):
        return super().forward(input).relu()


class _ConvBn:
    """Mixin over a QAT conv: owns ``bn`` and folds it for fake quantization."""

    _BN: type = None
    _WITH_RELU = False

    def _init_bn(self, eps, momentum, freeze_bn):
        self.bn = self._BN(self.out_channels, eps, momentum)
        self.freeze_bn = freeze_bn if self.training else True

    def freeze_bn_stats(self):
        self.freeze_bn = True
        self.bn.training = False
        return self

    def update_bn_stats(self):
        self.freeze_bn = False
        self.bn.training = True
        return self

    def forward(self, input):
        bn = self.bn
        nd = self.weight.ndim
        std = (bn.running_var + bn.eps).sqrt()
        factor = bn.weight / std
        w_shape = (-1,) + (1,) * (nd - 1)
        b_shape = (1, -1) + (1,) * (nd - 2)
        scaled = self.weight_fake_quant(self.weight * factor.reshape(w_shape))
        out = self._conv_forward(input, scaled, None) / factor.reshape(b_shape)
        if self.bias is not None:
            out = out + self.bias.reshape(b_shape)
        if self.freeze_bn:
            was = bn.training
            bn.training = False
            out = bn(out)
            bn.training = was
        else:
            out = bn(out)
        return out.relu() if self._WITH_RELU else out

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_bn:
            self.bn.training = False
        return self

    def to_float_folded(self):
        """A float conv with the batch norm folded in (what convert quantizes)."""
        import numpy as np

        from .....creation import tensor as _tensor

        bn = self.bn
        std = np.sqrt(bn.running_var.detach()._data + bn.eps)
        gamma = bn.weight.detach()._data
        factor = gamma / std
        w = self.weight.detach()._data * factor.reshape((-1,) + (1,) * (self.weight.ndim - 1))
        b0 = self.bias.detach()._data if self.bias is not None else np.zeros_like(gamma)
        b = (b0 - bn.running_mean.detach()._data) * factor + bn.bias.detach()._data
        conv = self._FLOAT(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            True,
            self.padding_mode,
        )
        conv.weight = Parameter(_tensor(w.astype(np.float32)))
        conv.bias = Parameter(_tensor(b.astype(np.float32)))
        return conv

    to_float = to_float_folded

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        if not isinstance(mod, _FusedModule):
            raise AssertionError(
                f"{cls.__name__}.from_float expects a fused module "
                f"(fuse_modules(..., is_qat=True)), got {type(mod).__name__}"
            )
        if getattr(mod, "qconfig", None) is None:
            raise AssertionError("Input float module must have qconfig defined")
        conv, bn = mod[0], mod[1]
        q = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            bn.eps,
            bn.momentum,
            False,
            qconfig=mod.qconfig,
        )
        q.weight = Parameter(conv.weight.detach().clone())
        if conv.bias is not None:
            q.bias = Parameter(conv.bias.detach().clone())
        q.bn.load_state_dict(bn.state_dict())
        q.bn.training = bn.training
        return q


def _make_convbn(name, qat_conv, bn_cls, float_conv, relu):
    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups=1,
        bias=None,
        padding_mode="zeros",
        eps=1e-05,
        momentum=0.1,
        freeze_bn=False,
        qconfig=None,
    ):
        qat_conv.__init__(
            self,
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation,
            groups,
            bool(bias),
            padding_mode,
            qconfig=qconfig,
        )
        self._init_bn(eps, momentum, freeze_bn)

    return type(
        name,
        (_ConvBn, qat_conv),
        {
            "__init__": __init__,
            "_BN": bn_cls,
            "_FLOAT": float_conv,
            "_WITH_RELU": relu,
            "__module__": __name__,
            "__doc__": f"QAT {float_conv.__name__} + {bn_cls.__name__}{' + ReLU' if relu else ''}.",
        },
    )


ConvBn1d = _make_convbn("ConvBn1d", _qat.Conv1d, BatchNorm1d, _Conv1d, False)
ConvBn2d = _make_convbn("ConvBn2d", _qat.Conv2d, BatchNorm2d, _Conv2d, False)
ConvBnReLU1d = _make_convbn("ConvBnReLU1d", _qat.Conv1d, BatchNorm1d, _Conv1d, True)
ConvBnReLU2d = _make_convbn("ConvBnReLU2d", _qat.Conv2d, BatchNorm2d, _Conv2d, True)


def freeze_bn_stats(mod) -> None:
    """``model.apply(freeze_bn_stats)``: stop updating batch-norm statistics in QAT."""
    if isinstance(mod, _ConvBn):
        mod.freeze_bn_stats()


def update_bn_stats(mod) -> None:
    if isinstance(mod, _ConvBn):
        mod.update_bn_stats()
