"""``nn.quantized.Conv1d`` / ``Conv2d``: int8 weights, integer convolution, requantize."""

from __future__ import annotations

import numpy as np

from ..... import quantized as _q
from .....nn.module import Module
from .....tensor import Tensor
from .. import _kernels as K
from .utils import (
    check_quantized_input,
    hoist_qparams,
    quantize_weight,
    weight_bound,
)

__all__ = ["Conv1d", "Conv2d"]


def _tuple(v, n):
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


class _ConvNd(Module):
    _NDIM = 2
    _RELU = False
    _NAME = "QuantizedConv2d"

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
    ):
        super().__init__()
        n = self._NDIM
        if in_channels % groups or out_channels % groups:
            raise ValueError("in_channels and out_channels must be divisible by groups")
        if padding_mode != "zeros":
            raise ValueError(
                f"quantized convolution supports padding_mode='zeros' only, got {padding_mode!r}"
            )
        if isinstance(padding, str):
            raise ValueError(f"quantized convolution needs numeric padding, got {padding!r}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = _tuple(kernel_size, n)
        self.stride, self.padding = _tuple(stride, n), _tuple(padding, n)
        self.dilation = _tuple(dilation, n)
        self.transposed, self.output_padding = False, (0,) * n
        self.padding_mode = padding_mode
        shape = (out_channels, in_channels // groups) + self.kernel_size
        w = _q.quantize_per_tensor(Tensor(np.zeros(shape, np.float32)), 1.0, 0, _q.qint8)
        self.set_weight_bias(w, Tensor(np.zeros(out_channels, np.float32)) if bias else None)
        self.scale, self.zero_point = 1.0, 0

    def _get_name(self) -> str:
        return self._NAME

    def set_weight_bias(self, w, b) -> None:
        if not isinstance(w, _q.QTensor):
            raise TypeError(f"{self._get_name()}: weight must be a quantized tensor")
        self._w, self._b = w, b
        self._wmax = weight_bound(w)

    def weight(self):
        return self._w

    def bias(self):
        return self._b

    def extra_repr(self) -> str:
        s = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, scale={self.scale}, zero_point={self.zero_point}"
        )
        if any(self.padding):
            s += f", padding={self.padding}"
        if any(d != 1 for d in self.dilation):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self._b is None:
            s += ", bias=False"
        return s

    def forward(self, x):
        # the per-call path of a small layer is mostly Python: plain attribute reads only
        if type(x) is not _q.QTensor or x._axis is not None:
            x = check_quantized_input(x, self._get_name())
        data = x._data
        if data.ndim != self._NDIM + 2:
            raise ValueError(
                f"{self._get_name()}: input shape must be "
                f"(N, C, {'L' if self._NDIM == 1 else 'H, W'}), got {tuple(x.shape)}"
            )
        if data.shape[1] != self.in_channels:
            raise RuntimeError(
                f"{self._get_name()}: expected input with {self.in_channels} "
                f"channels, got {data.shape[1]}"
            )
        w, b = self._w, self._b
        zp = int(x._zero_point)
        lo, hi = _q._RANGES[x._qdtype]
        if self._direct_ok(data, zp, lo, hi):
            return self._direct(x, data, zp, lo, hi)
        acc = K.conv_acc(
            self._NDIM,
            data,
            zp,
            w,
            max(zp - lo, hi - zp),
            self._wmax,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
        )
        codes = K.requantize(
            acc,
            float(x._scale),
            K.weight_scale(w),
            None if b is None else b._data,
            self.scale,
            self.zero_point,
            lo,
            hi,
            1,
            self._RELU,
            data.dtype,
        )
        return _q.QTensor._make(
            codes, x._qdtype, _q.per_tensor_affine, float(self.scale), int(self.zero_point)
        )

    def __getstate__(self):  # pickling / deepcopy: the direct plan is a cache
        state = self.__dict__.copy()
        state.pop("_direct_plan", None)
        return state

    def _direct_ok(self, data, zp: int, lo: int, hi: int) -> bool:
        """Whether the compiled direct convolution (``_numba_int.conv2d_requantize``) takes
        this call: a NumPy 2-D convolution, stride / dilation 1, one group, a short reduction
        (at most 36 taps: an im2col GEMM is inefficient there) and at most 1024 output positions
        (a 28x28 image: 0.09 ms against 0.17 ms through onnxruntime; 64 8x8 images: 0.98 ms
        against 0.63 ms for float32, where the other kernels win), exact float32 sums."""
        if (
            self._NDIM != 2
            or type(data) is not np.ndarray
            or self.groups != 1
            or self.stride != (1, 1)
            or self.dilation != (1, 1)
        ):
            return False
        taps = self.in_channels * self.kernel_size[0] * self.kernel_size[1]
        n, _, h, w = data.shape
        oh = h + 2 * self.padding[0] - self.kernel_size[0] + 1
        ow = w + 2 * self.padding[1] - self.kernel_size[1] + 1
        if taps > 36 or n * oh * ow > 1024 or oh <= 0 or ow <= 0:
            return False
        if taps * max(zp - lo, hi - zp) * self._wmax >= K._F32_EXACT:
            return False
        from .. import _numba_int as nbi  # imports numba: only for a layer that may use it

        return nbi.enabled()

    def _direct(self, x, data, zp: int, lo: int, hi: int):
        from .. import _numba_int as nbi

        w, b = self._w, self._b
        key = (x._scale, self.scale, self.zero_point, self._RELU, lo, hi)
        plan = self.__dict__.get("_direct_plan")  # a cache, not module state
        if plan is None or plan[0] != key or plan[1] is not w or plan[2] is not b:
            plan = (key, w, b) + self._direct_constants(x, w, b, lo, hi)
            self.__dict__["_direct_plan"] = plan
        m_n, c_n, qlo, qhi, wc = plan[3:]
        n, _, h, wd = data.shape
        ph, pw = self.padding
        oh = h + 2 * ph - self.kernel_size[0] + 1
        ow = wd + 2 * pw - self.kernel_size[1] + 1
        out = np.empty((n, w.shape[0], oh, ow), data.dtype)
        nbi.conv2d_requantize(np.ascontiguousarray(data), zp, wc, ph, pw, m_n, c_n, qlo, qhi, out)
        return _q.QTensor._make(
            out, x._qdtype, _q.per_tensor_affine, float(self.scale), int(self.zero_point)
        )

    def _direct_constants(self, x, w, b, lo: int, hi: int) -> tuple:
        """(multipliers, offsets per output channel, output bounds, centered weight codes)."""
        from .utils import weight_codes

        no = w.shape[0]
        m, c = K._constants(
            np,
            float(x._scale),
            K.weight_scale(w),
            None if b is None else b._data,
            float(self.scale),
            int(self.zero_point),
            1,
            0,
        )
        m_n = np.broadcast_to(np.asarray(m, np.float32).reshape(-1), (no,)).copy()
        c_n = np.zeros(no, np.float32)  # no offset: adding +0.0 changes no code
        if c is not None:
            c_n[:] = np.asarray(c, np.float32).reshape(-1)
        qlo = max(lo, int(self.zero_point)) if self._RELU else lo
        return m_n, c_n, np.float32(qlo), np.float32(hi), weight_codes(w)[0]

    # torch's keys: weight (quantized), bias (float), scale, zero_point
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "weight"] = self._w
        destination[prefix + "bias"] = self._b
        destination[prefix + "scale"] = Tensor(np.array(self.scale, np.float32))
        destination[prefix + "zero_point"] = Tensor._wrap(np.array(self.zero_point, np.int64))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        keys = ("weight", "bias", "scale", "zero_point")
        missing = [prefix + k for k in keys if prefix + k not in state_dict]
        if missing:
            missing_keys.extend(missing)
            return
        w, b = state_dict.pop(prefix + "weight"), state_dict.pop(prefix + "bias")
        if not isinstance(w, _q.QTensor) or tuple(w.shape) != tuple(self._w.shape):
            error_msgs.append(
                f"{prefix}weight: expected a quantized tensor of shape "
                f"{tuple(self._w.shape)}, got "
                f"{getattr(w, 'shape', type(w).__name__)}"
            )
            return
        self.set_weight_bias(w, b)
        self.scale = float(state_dict.pop(prefix + "scale").item())
        self.zero_point = int(state_dict.pop(prefix + "zero_point").item())
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, False, missing_keys, unexpected_keys, error_msgs
        )

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        """Quantize a float (or fused / QAT) convolution that ``prepare`` observed."""
        from .._float_source import float_linear_parts

        conv, act_obs, wt_obs = float_linear_parts(mod, cls)
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
        )
        bias = None if conv.bias is None else Tensor(conv.bias.detach()._data.astype(np.float32))
        q.set_weight_bias(quantize_weight(conv.weight, wt_obs), bias)
        q.scale, q.zero_point = hoist_qparams(act_obs)
        return q


class Conv1d(_ConvNd):
    """Quantized 1-D convolution over (N, C, L) quint8 input."""

    _NDIM = 1
    _NAME = "QuantizedConv1d"


class Conv2d(_ConvNd):
    """Quantized 2-D convolution over (N, C, H, W) quint8 input."""

    _NDIM = 2
    _NAME = "QuantizedConv2d"
