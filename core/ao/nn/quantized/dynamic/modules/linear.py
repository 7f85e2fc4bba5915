"""``nn.quantized.dynamic.Linear``: int8 weights; float input quantized per call (its own
min / max), integer GEMM, float output."""

from __future__ import annotations

import numpy as np

from ...... import quantized as _q
from ......tensor import Tensor
from ... import _kernels as K
from ...modules.linear import Linear as _QLinear
from ...modules.utils import _CACHE, quantize_weight, weight_codes
from ._rnn_layers import (
    dynamic_qparams,
    numba_passes,
    numba_rows_kernel,
    weight_zero_points,
)

__all__ = ["Linear", "dynamic_linear"]


def _zero_points(w: _q.QTensor) -> np.ndarray:
    """The weight's int32 zero point per row (cached on the weight like its other operands)."""
    hit = w._cache if _CACHE[0] else None
    if hit is not None and ("zp32",) in hit:
        return hit[("zp32",)]
    zps = weight_zero_points(w)
    if _CACHE[0]:
        if w._cache is None:
            w._cache = {}
        w._cache[("zp32",)] = zps
    return zps


def dynamic_linear(x: np.ndarray, w: _q.QTensor, wmax: int, bias, reduce_range: bool):
    """float x (..., K) @ int8 w (N, K)^T + bias -> float32, with x quantized to quint8 by its
    own range (torch's fbgemm dynamic linear: reduce_range uses 7 bits for activations)."""
    xp = K.xp_of(x)
    hi = 127 if reduce_range else 255
    k = x.shape[-1] if x.ndim else 1
    rows = x.size // k if k else 0
    nb = numba_passes() if xp is np and x.dtype == np.float32 and rows else None
    if nb is not None:  # compiled passes around the GEMM, each one for NumPy's several
        x2 = np.ascontiguousarray(x.reshape(rows, k))
        lo_v, hi_v = (float(v) for v in nb.min_max(x2))
    else:
        lo_v = float(x.min()) if x.size else 0.0
        hi_v = float(x.max()) if x.size else 0.0
    scale, zp = dynamic_qparams(lo_v, hi_v, hi)
    inv = float(np.float32(1.0) / np.float32(scale))
    if nb is not None:
        kernel = numba_rows_kernel(w, rows, k, max(zp, hi - zp), wmax)
        if kernel is not None:  # few rows: the int8 GEMV, same accumulators, read as int8
            acc = np.empty((rows, w._data.shape[0]), np.float32)
            kernel(x2, inv, zp, hi, w._data, _zero_points(w), acc)
            y = K.dequant_acc(acc, scale, K.weight_scale(w), bias, 1)
            return y.reshape(x.shape[:-1] + (acc.shape[1],))
        a = np.empty((rows, k), np.float32)
        nb.quantize_centered(x2, inv, zp, hi, a)
        wc, ws = weight_codes(w, transpose=True)
        acc = K.int_linear(a, wc, max(zp, hi - zp), wmax)
        if acc.dtype != np.float32:
            acc = acc.astype(np.float32)
        n = wc.shape[1]
        ws_n = np.broadcast_to(np.asarray(ws, np.float32).reshape(-1), (n,)).copy()
        b = np.zeros((1, n), np.float32) if bias is None else bias.astype(np.float32)
        nb.scale_add(acc, np.float32(scale), ws_n, b.reshape(1, n))
        return acc.reshape(x.shape[:-1] + (n,))
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
