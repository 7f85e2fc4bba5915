"""``nn.quantized.Linear``: int8 weights, quint8 activations, integer GEMM + requantize."""

from __future__ import annotations

import numpy as np

from ..... import quantized as _q
from .....nn.module import Module
from .....tensor import Tensor
from .. import _kernels as K
from .utils import (
    SavedQParams,
    check_quantized_input,
    hoist_qparams,
    quantize_weight,
    weight_bound,
)

__all__ = ["LinearPackedParams", "Linear"]


class LinearPackedParams(Module):
    """Holds the quantized weight and float bias; state_dict keys as torch's
    (``dtype`` and ``_packed_params`` = ``(weight, bias)``)."""

    _version = 3

    def __init__(self, dtype=_q.qint8):
        super().__init__()
        self.dtype = dtype
        w = _q.quantize_per_tensor(Tensor(np.zeros((1, 1), np.float32)), 1.0, 0, _q.qint8)
        self.set_weight_bias(w, None)

    def set_weight_bias(self, weight, bias) -> None:
        if self.dtype is _q.qint8 and not isinstance(weight, _q.QTensor):
            raise TypeError("LinearPackedParams: weight must be a quantized tensor (qint8)")
        self._weight, self._bias = weight, bias
        if isinstance(weight, _q.QTensor):
            self._wmax = weight_bound(weight)

    def _weight_bias(self):
        return self._weight, self._bias

    def forward(self, x):
        return x

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "dtype"] = self.dtype
        destination[prefix + "_packed_params"] = self._weight_bias()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for key in ("dtype", "_packed_params"):
            if prefix + key not in state_dict:
                if strict:
                    missing_keys.append(prefix + key)
                return
        self.dtype = state_dict.pop(prefix + "dtype")
        weight, bias = state_dict.pop(prefix + "_packed_params")
        self.set_weight_bias(weight, bias)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, False, missing_keys,
                                      unexpected_keys, error_msgs)

    def extra_repr(self) -> str:
        return repr(self._weight_bias())


class Linear(SavedQParams, Module):
    """A quantized ``y = x W^T + b``: quint8 in, quint8 out (``scale`` / ``zero_point``)."""

    _version = 3
    _FLOAT_MODULE = None  # set below (nn.Linear)
    _RELU = False

    def __init__(self, in_features: int, out_features: int, bias_: bool = True,
                 dtype=_q.qint8):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bias = Tensor(np.zeros(out_features, np.float32)) if bias_ else None
        w = _q.quantize_per_tensor(Tensor(np.zeros((out_features, in_features), np.float32)),
                                   1.0, 0, _q.qint8)
        self._packed_params = LinearPackedParams(dtype)
        self._packed_params.set_weight_bias(w, bias)
        self.scale = 1.0
        self.zero_point = 0

    def _get_name(self) -> str:
        return "QuantizedLinear"

    def __repr__(self) -> str:  # the packed params child stays hidden, as torch prints it
        return f"{self._get_name()}({self.extra_repr()})"

    def extra_repr(self) -> str:
        w = self.weight()
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"scale={self.scale}, zero_point={self.zero_point}, qscheme={w.qscheme()}")

    def weight(self) -> _q.QTensor:
        return self._packed_params._weight

    def bias(self):
        return self._packed_params._bias

    def set_weight_bias(self, w, b) -> None:
        self._packed_params.set_weight_bias(w, b)

    def forward(self, x):
        # the per-call path of a small layer is mostly Python: plain attribute reads only
        if type(x) is not _q.QTensor or x._axis is not None:
            x = check_quantized_input(x, self._get_name())
        pp = self._packed_params
        w, b = pp._weight, pp._bias
        data = x._data
        shp = data.shape
        if shp[-1] != self.in_features:
            raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied "
                               f"({int(np.prod(shp[:-1]))}x{shp[-1]} and "
                               f"{self.in_features}x{self.out_features})")
        zp = int(x._zero_point)
        lo, hi = _q._RANGES[x._qdtype]
        acc = K.linear_acc(data.reshape(-1, shp[-1]), zp, w, max(zp - lo, hi - zp), pp._wmax)
        codes = K.requantize(acc, float(x._scale), K.weight_scale(w),
                             None if b is None else b._data, self.scale, self.zero_point, lo, hi,
                             1, self._RELU, data.dtype)
        return _q.QTensor._make(codes.reshape(shp[:-1] + (self.out_features,)), x._qdtype,
                                _q.per_tensor_affine, float(self.scale), int(self.zero_point))

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        """Quantize a float (or QAT / fused) Linear that ``prepare`` observed."""
        from .._float_source import float_linear_parts

        lin, act_obs, wt_obs = float_linear_parts(mod, cls)
        qweight = quantize_weight(lin.weight, wt_obs)
        q = cls(lin.in_features, lin.out_features, dtype=wt_obs.dtype)
        bias = None if lin.bias is None else Tensor(lin.bias.detach()._data.astype(np.float32))
        q.set_weight_bias(qweight, bias)
        q.scale, q.zero_point = hoist_qparams(act_obs)
        return q

    @classmethod
    def from_reference(cls, ref, output_scale: float, output_zero_point: int):
        """Build from a reference quantized Linear: any module with ``in_features``,
        ``out_features``, ``bias`` and ``get_quantized_weight()`` (torch's
        ``nn.quantized.reference.Linear`` interface). ember's ``convert`` / ``convert_fx``
        produce quantized modules directly and build no reference modules themselves."""
        if not callable(getattr(ref, "get_quantized_weight", None)):
            raise TypeError(f"Linear.from_reference expects a reference quantized Linear with "
                            f"get_quantized_weight(), got {type(ref).__name__}")
        qweight = ref.get_quantized_weight()
        q = cls(ref.in_features, ref.out_features, dtype=qweight.dtype)
        bias = None if ref.bias is None else Tensor(ref.bias.detach()._data.astype(np.float32))
        q.set_weight_bias(qweight, bias)
        q.scale, q.zero_point = float(output_scale), int(output_zero_point)
        return q
