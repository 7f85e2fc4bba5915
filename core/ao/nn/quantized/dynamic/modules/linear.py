"""``nn.quantized.dynamic.Linear``: int8 weights; float input quantized per call (its own
min / max), integer GEMM, float output."""

from __future__ import annotations

import numpy as np

from ...... import quantized as _q
from ......tensor import Tensor
from ... import _kernels as K
from ...modules.linear import Linear as _QLinear
from ...modules.utils import quantize_weight, weight_codes
from ._rnn_layers import dynamic_qparams

__all__ = ["Linear", "dynamic_linear"]


def dynamic_linear(x: np.ndarray, w: _q.QTensor, wmax: int, bias, reduce_range: bool):
    """float x (..., K) @ int8 w (N, K)^T + bias -> float32, with x quantized to quint8 by its
    own range (torch's fbgemm dynamic linear: reduce_range uses 7 bits for activations)."""
    xp = K.xp_of(x)
    hi = 127 if reduce_range else 255
    lo_v = float(x.min()) if x.size else 0.0
    hi_v = float(x.max()) if x.size else 0.0
    scale, zp = dynamic_qparams(lo_v, hi_v, hi)
    inv = float(np.float32(1.0) / np.float32(scale))
    codes = (x.astype(xp.float64) * inv + zp).astype(xp.float32)
    a = xp.rint(xp.clip(codes, 0, hi)) - xp.float32(zp)
    shp = a.shape
    wc, ws = weight_codes(w, transpose=True)
    acc = K.int_linear(a.reshape(-1, shp[-1]), wc, max(zp, hi - zp), wmax)
    y = K.dequant_acc(acc, scale, ws, bias, 1)
    return y.reshape(shp[:-1] + (wc.shape[1],))


class Linear(_QLinear):
    """Dynamically quantized Linear: float in, float out, int8 weight (4x smaller)."""

    _version = 4

    def __init__(self, in_features: int, out_features: int, bias_: bool = True, dtype=_q.qint8):
        super().__init__(in_features, out_features, bias_, dtype=dtype)
        self.version = 4
        self.reduce_range = True

    def _get_name(self) -> str:
        return "DynamicQuantizedLinear"

    def extra_repr(self) -> str:
        w = self.weight()
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"dtype={self._packed_params.dtype}, qscheme={w.qscheme()}"
        )

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(x, _q.QTensor):
            raise RuntimeError(
                "DynamicQuantizedLinear: expected a float input, got a quantized tensor"
            )
        if x.shape[-1] != self.in_features:
            raise RuntimeError(
                f"mat1 and mat2 shapes cannot be multiplied "
                f"({x.numel() // max(x.shape[-1], 1)}x{x.shape[-1]} and "
                f"{self.in_features}x{self.out_features})"
            )
        b = self.bias()
        y = dynamic_linear(
            x._data,
            self.weight(),
            self._packed_params._wmax,
            None if b is None else b._data,
            self.reduce_range,
        )
        return Tensor._wrap(y)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        """Quantize a float Linear's weight (the qconfig's weight observer, default per-tensor
        symmetric int8)."""
        from .....quantization.qconfig import default_dynamic_qconfig
        from ...._float_source_dyn import float_layer

        lin = float_layer(mod)
        qconfig = getattr(mod, "qconfig", None) or default_dynamic_qconfig
        obs = qconfig.weight()
        if obs.dtype is not _q.qint8:
            raise RuntimeError(
                f"dynamic quantization supports dtype=ember.qint8 weights, got {obs.dtype}"
            )
        obs(lin.weight)
        q = cls(lin.in_features, lin.out_features, dtype=obs.dtype)
        bias = None if lin.bias is None else Tensor(lin.bias.detach()._data.astype(np.float32))
        q.set_weight_bias(quantize_weight(lin.weight, obs), bias)
        return q
