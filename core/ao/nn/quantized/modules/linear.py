"""``nn.quantized.Linear``: int8 weights, quint8 activations, integer GEMM + requantize."""

from __future__ import annotations

import numpy as np

from ..... import quantized as _q
from .....nn.module import Module
from .....tensor import Tensor
from .. import _kernels as K
from .. import _ort
from .._kernels import _clip
from .utils import (
    _CACHE,
    SavedQParams,
    check_quantized_input,
    hoist_qparams,
    quantize_weight,
    weight_bound,
    weight_codes,
)

__all__ = ["LinearPackedParams", "Linear"]


def _numba_plan(w, xzp: int, m, c, amax: int, wmax: int):
    """(kernel, input zero point, int8 weight, int32 weight zero points, float32 multipliers and
    offsets per output) for the compiled kernel, or None where it does not apply (numba missing
    or off, a CuPy or non-contiguous weight, an int32 accumulator that could overflow)."""
    wd = w._data
    if type(wd) is not np.ndarray or wd.ndim != 2 or not wd.flags.c_contiguous:
        return None
    from .. import _numba_int as nbi  # imports numba: only once a plan is made

    if not nbi.enabled() or not nbi.fits_int32(wd.shape[1], amax, wmax):
        return None
    n = wd.shape[0]
    wzp = np.broadcast_to(np.asarray(w._zero_point, np.int32).reshape(-1), (n,)).copy()
    m_n = np.broadcast_to(np.asarray(m, np.float32).reshape(-1), (n,)).copy()
    c_n = np.zeros(n, np.float32)  # no offset: adding +0.0 changes no code
    if c is not None:
        c_n[:] = np.asarray(c, np.float32).reshape(-1)
    return nbi.linear_requantize, int(xzp), wd, wzp, m_n, c_n


def _small_forward(consts, data, qd, out_scale, out_zp):
    """The float-BLAS path of ``_kernels`` for a small call, with the plan's constants: the
    same operations on the same values (so the same codes), without their per-call lookups."""
    w, zpf, m, c, lo, hi, storage, l1, nb = consts
    if nb is not None:  # the compiled int8 kernel (_numba_int): reads the int8 weight itself
        kernel, zp, wd, wzp, m_n, c_n = nb
        shp = data.shape
        out = np.empty((data.size // shp[-1], wd.shape[0]), storage)
        kernel(data.reshape(-1, shp[-1]), zp, wd, wzp, m_n, c_n, lo, hi, out)
        return _q.QTensor._make(
            out.reshape(shp[:-1] + (wd.shape[0],)),
            qd,
            _q.per_tensor_affine,
            float(out_scale),
            int(out_zp),
        )
    if l1:  # the dtype's bound is too loose for this weight: this input's own range decides
        zp = 0 if zpf is None else int(zpf)
        amax = int(data.max()) - zp
        if zp:
            amax = max(amax, zp - int(data.min()))
        if amax * l1 >= K._F32_EXACT:
            return None  # the general path splits the sum into exact chunks
    shp = data.shape
    a = data.reshape(-1, shp[-1]).astype(np.float32)
    if zpf is not None:
        np.subtract(a, zpf, out=a)
    # One row reads the (N, K) codes, as F.linear's x @ W.T does: BLAS's dot-product GEMV
    # measured up to 1.4x faster there (3136 -> 128) than on the (K, N) layout that GEMMs
    # prefer. Exact integer sums: the same values either way. (A layer called with one row
    # and with several keeps both float32 copies.)
    acc = a @ (weight_codes(w)[0].T if a.shape[0] == 1 else weight_codes(w, True)[0])
    # _kernels.requantize's passes, in place on the float32 accumulator
    np.multiply(acc, m, out=acc)
    if c is not None:
        np.add(acc, c, out=acc)
    _clip(acc, lo, hi, out=acc)
    np.rint(acc, out=acc)
    return _q.QTensor._make(
        acc.astype(storage).reshape(shp[:-1] + (acc.shape[1],)),
        qd,
        _q.per_tensor_affine,
        float(out_scale),
        int(out_zp),
    )


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

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        for key in ("dtype", "_packed_params"):
            if prefix + key not in state_dict:
                if strict:
                    missing_keys.append(prefix + key)
                return
        self.dtype = state_dict.pop(prefix + "dtype")
        weight, bias = state_dict.pop(prefix + "_packed_params")
        self.set_weight_bias(weight, bias)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, False, missing_keys, unexpected_keys, error_msgs
        )

    def extra_repr(self) -> str:
        return repr(self._weight_bias())


class Linear(SavedQParams, Module):
    """A quantized ``y = x W^T + b``: quint8 in, quint8 out (``scale`` / ``zero_point``)."""

    _version = 3
    _FLOAT_MODULE = None  # set below (nn.Linear)
    _RELU = False

    def __init__(self, in_features: int, out_features: int, bias_: bool = True, dtype=_q.qint8):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bias = Tensor(np.zeros(out_features, np.float32)) if bias_ else None
        w = _q.quantize_per_tensor(
            Tensor(np.zeros((out_features, in_features), np.float32)), 1.0, 0, _q.qint8
        )
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
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"scale={self.scale}, zero_point={self.zero_point}, qscheme={w.qscheme()}"
        )

    def weight(self) -> _q.QTensor:
        return self._packed_params._weight

    def bias(self):
        return self._packed_params._bias

    def set_weight_bias(self, w, b) -> None:
        self._packed_params.set_weight_bias(w, b)

    def forward(self, x):
        # A small call (below onnxruntime's size, so always the float-BLAS path) is mostly
        # Python: its plan (built once per weight, bias and qparams) is checked with plain
        # reads, then ~6 NumPy calls run it.
        d = self.__dict__
        plan = d.get("_plan")
        if plan is not None and type(x) is _q.QTensor:
            pp = plan[0]
            data = x._data
            if (
                pp._weight is plan[1]
                and pp._bias is plan[2]
                and type(data) is np.ndarray
                and plan[3]
                == (x._scale, x._zero_point, x._qdtype, self.scale, self.zero_point, x._axis)
                and data.shape[-1] == self.in_features
                and plan[4] is not None
                and data.size * self.out_features < _ort.LINEAR_MIN_MACS
                and _CACHE[0]
                and d["_modules"]["_packed_params"] is pp
            ):
                y = _small_forward(plan[4], data, x._qdtype, self.scale, self.zero_point)
                if y is not None:
                    return y
        if type(x) is not _q.QTensor or x._axis is not None:
            x = check_quantized_input(x, self._get_name())
        pp = self._packed_params
        w, b = pp._weight, pp._bias
        data = x._data
        shp = data.shape
        if shp[-1] != self.in_features:
            raise RuntimeError(
                f"mat1 and mat2 shapes cannot be multiplied "
                f"({int(np.prod(shp[:-1]))}x{shp[-1]} and "
                f"{self.in_features}x{self.out_features})"
            )
        if type(data) is np.ndarray and data.size * self.out_features < _ort.LINEAR_MIN_MACS:
            plan = self._make_plan(
                pp, w, b, (x._scale, x._zero_point, x._qdtype, self.scale, self.zero_point, None)
            )
            if plan[4] is not None:
                y = _small_forward(plan[4], data, x._qdtype, self.scale, self.zero_point)
                if y is not None:
                    return y
        zp = int(x._zero_point)
        lo, hi = _q._RANGES[x._qdtype]
        acc = K.linear_acc(data.reshape(-1, shp[-1]), zp, w, max(zp - lo, hi - zp), pp._wmax)
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
            codes.reshape(shp[:-1] + (self.out_features,)),
            x._qdtype,
            _q.per_tensor_affine,
            float(self.scale),
            int(self.zero_point),
        )

    def __getstate__(self):  # pickling / deepcopy: the plan is a cache (float32 weight codes)
        state = self.__dict__.copy()
        state.pop("_plan", None)
        return state

    def _make_plan(self, pp, w, b, key) -> tuple:
        """(packed params, weight, bias, key, constants or None): what a small call needs,
        computed once per weight / bias / input and output qparams (``constants`` is None where
        the small path does not apply: the weight cache is off, or one float32 GEMM may not be
        exact for every input of this dtype)."""
        xs, xzp, qd, out_scale, out_zp, _ = key
        lo, hi = _q._RANGES[qd]
        amax = max(xzp - lo, hi - xzp)
        k = self.in_features
        consts = None
        if _CACHE[0]:
            l1 = K.weight_l1(w)
            # 0: every input of this dtype sums exactly in float32; else check per call
            check = 0 if (k * amax * pp._wmax < K._F32_EXACT or amax * l1 < K._F32_EXACT) else l1
            m, c = K._constants(
                np,
                float(xs),
                K.weight_scale(w),
                None if b is None else b._data,
                float(out_scale),
                int(out_zp),
                2,
                1,
            )
            qlo = max(lo, int(out_zp)) if self._RELU else lo
            consts = (
                w,
                np.float32(xzp) if xzp else None,
                m,
                c,
                np.float32(qlo),
                np.float32(hi),
                np.dtype(qd.np),
                check,
                _numba_plan(w, xzp, m, c, amax, pp._wmax),
            )
        plan = (pp, w, b, key, consts)
        self.__dict__["_plan"] = plan  # a cache, not module state (no __setattr__ bookkeeping)
        return plan

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
            raise TypeError(
                f"Linear.from_reference expects a reference quantized Linear with "
                f"get_quantized_weight(), got {type(ref).__name__}"
            )
        qweight = ref.get_quantized_weight()
        q = cls(ref.in_features, ref.out_features, dtype=qweight.dtype)
        bias = None if ref.bias is None else Tensor(ref.bias.detach()._data.astype(np.float32))
        q.set_weight_bias(qweight, bias)
        q.scale, q.zero_point = float(output_scale), int(output_zero_point)
        return q
