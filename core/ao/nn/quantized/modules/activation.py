"""Quantized activations, ``Quantize`` / ``DeQuantize``, and ``FloatFunctional`` /
``QFunctional`` (add, mul, cat on quantized tensors)."""

from __future__ import annotations

import numpy as np

from ..... import quantized as _q
from .....nn import functional as F
from .....nn.module import Module
from .....nn.modules.linear import Identity
from .....tensor import Tensor
from .._kernels import xp_of
from .utils import SavedQParams as _SavedQParams
from .utils import check_quantized_input, hoist_qparams

__all__ = [
    "Quantize",
    "DeQuantize",
    "ReLU6",
    "Hardswish",
    "LeakyReLU",
    "Sigmoid",
    "FloatFunctional",
    "FXFloatFunctional",
    "QFunctional",
    "Dropout",
]


class Quantize(Module):
    """Float -> quantized with fixed ``scale`` / ``zero_point`` (what ``QuantStub`` becomes)."""

    def __init__(self, scale: float, zero_point: int, dtype, factory_kwargs=None):
        super().__init__()
        self.register_buffer("scale", Tensor(np.array([scale], np.float32)))
        self.register_buffer("zero_point", Tensor._wrap(np.array([zero_point], np.int64)))
        self.dtype = dtype

    def forward(self, X: Tensor):
        return _q.quantize_per_tensor(
            X, float(self.scale._data[0]), int(self.zero_point._data[0]), self.dtype
        )

    def _get_name(self) -> str:
        return "Quantize"

    def extra_repr(self) -> str:
        return f"scale={self.scale._data}, zero_point={self.zero_point._data}, dtype={self.dtype}"

    @staticmethod
    def from_float(mod, use_precomputed_fake_quant: bool = False):
        if not hasattr(mod, "activation_post_process"):
            raise RuntimeError(
                "Quantize.from_float: the QuantStub has no observer; run "
                "prepare() and calibrate first"
            )
        scale, zp = hoist_qparams(mod.activation_post_process)
        return Quantize(scale, zp, mod.activation_post_process.dtype)


class DeQuantize(Module):
    """Quantized -> float32 (what ``DeQuantStub`` becomes)."""

    def forward(self, Xq):
        return Xq.dequantize() if isinstance(Xq, _q.QTensor) else Xq

    @staticmethod
    def from_float(mod, use_precomputed_fake_quant: bool = False):
        return DeQuantize()


class _OutQParams(Module):
    """An elementwise activation recomputed in float between dequantize and requantize (it
    has its own output scale / zero point, as torch's quantized activations)."""

    def __init__(self, scale: float = 1.0, zero_point: int = 0):
        super().__init__()
        self.scale, self.zero_point = scale, zero_point

    def _fn(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x):
        x = check_quantized_input(x, self._get_name())
        return _q.quantize_per_tensor(
            self._fn(x.dequantize()), self.scale, self.zero_point, x.dtype
        )

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        q = cls.__new__(cls)
        _OutQParams.__init__(q, *hoist_qparams(mod.activation_post_process))
        for k in ("negative_slope", "inplace"):
            if hasattr(mod, k):
                setattr(q, k, getattr(mod, k))
        return q


class ReLU6(Module):
    """min(max(x, 0), 6) on the codes: output keeps the input's qparams (as torch)."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        x = check_quantized_input(x, "QuantizedReLU6")
        xp = xp_of(x._data)
        lo, hi = _q.qrange(x.dtype)
        six = int(np.clip(np.rint(6.0 / x._scale) + x._zero_point, lo, hi))
        zp = int(x._zero_point)
        return x._like(xp.clip(x._data, zp, six).astype(x._data.dtype))

    def _get_name(self) -> str:
        return "QuantizedReLU6"

    @staticmethod
    def from_float(mod, use_precomputed_fake_quant: bool = False):
        return ReLU6(mod.inplace)


class Hardswish(_SavedQParams, _OutQParams):
    def _fn(self, x):
        return F.hardswish(x)

    def _get_name(self) -> str:
        return "QuantizedHardswish"


class LeakyReLU(_SavedQParams, _OutQParams):
    def __init__(
        self,
        scale: float = 1.0,
        zero_point: int = 0,
        negative_slope: float = 1e-2,
        inplace: bool = False,
    ):
        super().__init__(scale, zero_point)
        self.negative_slope, self.inplace = negative_slope, inplace

    def _fn(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def _get_name(self) -> str:
        return "QuantizedLeakyReLU"


class Sigmoid(_OutQParams):
    def _fn(self, x):
        return x.sigmoid()

    def _get_name(self) -> str:
        return "QuantizedSigmoid"


class Dropout(Module):
    """Dropout in a quantized (inference) model: the identity."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        self.p, self.inplace = p, inplace

    def forward(self, x):
        return x

    def _get_name(self) -> str:
        return "QuantizedDropout"

    @staticmethod
    def from_float(mod, use_precomputed_fake_quant: bool = False):
        return Dropout(mod.p, mod.inplace)


class FloatFunctional(Module):
    """Float add / mul / cat as a module, so ``prepare`` can observe their outputs and
    ``convert`` can swap in :class:`QFunctional` (use it instead of ``+`` in quantizable code).
    """

    def __init__(self):
        super().__init__()
        self.activation_post_process = Identity()

    def forward(self, x):
        raise RuntimeError(
            "FloatFunctional is not intended to use the 'forward'. Please use the "
            "underlying operation"
        )

    def _obs(self, r):
        return self.activation_post_process(r)

    def add(self, x, y):
        return self._obs(x + y)

    def add_scalar(self, x, y: float):
        return x + y  # torch does not observe scalar ops (their qparams follow the input)

    def mul(self, x, y):
        return self._obs(x * y)

    def mul_scalar(self, x, y: float):
        return x * y

    def cat(self, x, dim: int = 0):
        from ..... import cat

        return self._obs(cat(list(x), dim))

    def add_relu(self, x, y):
        return self._obs(F.relu(x + y))

    def matmul(self, x, y):
        return self._obs(x @ y)


class FXFloatFunctional(FloatFunctional):
    """FloatFunctional without observers (FX graph mode inserts its own)."""

    def _obs(self, r):
        return r


class QFunctional(_SavedQParams, Module):
    """Quantized add / mul / cat: the float result of the dequantized inputs, requantized to
    this module's ``scale`` / ``zero_point`` (elementwise, so no GEMM is involved)."""

    def __init__(self):
        super().__init__()
        self.scale, self.zero_point = 1.0, 0
        self.activation_post_process = Identity()

    def _get_name(self) -> str:
        return "QFunctional"

    def extra_repr(self) -> str:
        return f"scale={self.scale}, zero_point={self.zero_point}"

    def forward(self, x):
        raise RuntimeError(
            "Functional is not intended to use the 'forward'. Please use the underlying operation"
        )

    def _q(self, r: Tensor, like):
        return _q.quantize_per_tensor(r, self.scale, self.zero_point, like.dtype)

    def add(self, x, y):
        return self._q(x.dequantize() + y.dequantize(), x)

    def add_scalar(self, x, y: float):
        return _q.quantize_per_tensor(x.dequantize() + y, x.q_scale(), x.q_zero_point(), x.dtype)

    def mul(self, x, y):
        return self._q(x.dequantize() * y.dequantize(), x)

    def mul_scalar(self, x, y: float):
        return _q.quantize_per_tensor(
            x.dequantize() * y, x.q_scale() * abs(y) or 1.0, x.q_zero_point(), x.dtype
        )

    def cat(self, x, dim: int = 0):
        from ..... import cat

        return self._q(cat([t.dequantize() for t in x], dim), x[0])

    def add_relu(self, x, y):
        return self._q(F.relu(x.dequantize() + y.dequantize()), x)

    def matmul(self, x, y):
        return self._q(x.dequantize() @ y.dequantize(), x)

    @classmethod
    def from_float(cls, mod, use_precomputed_fake_quant: bool = False):
        q = QFunctional()
        q.scale, q.zero_point = hoist_qparams(mod.activation_post_process)
        return q
