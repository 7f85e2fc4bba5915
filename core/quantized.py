"""Quantized tensors: ``ember.quantize_per_tensor``, ``quantize_per_channel``, ``qint8`` ...

Design: a quantized tensor is a :class:`QTensor`, a small ``Tensor`` subclass whose array holds
the integer codes (int8 / uint8 / int32) and whose extra slots hold the quantization parameters.
A subclass (rather than a side table keyed by tensor id) keeps the metadata alive exactly as long
as the codes, survives pickling and ``copy.deepcopy``, and lets ``isinstance`` checks and
``t.is_quantized`` be plain attribute reads. The codes are stored in the storage dtype, so a
quantized tensor really is 4x smaller than float32 and can be fed to an integer GEMM directly.

Numerics follow PyTorch's CPU kernels bit for bit (tested against torch):
``quantize``: ``q = rint(clamp(fl32(x * (1/scale) + zero_point), qmin, qmax))`` with one rounding
of the fused multiply-add (fbgemm's AVX2 path; the tail and qint32 paths agree), round half to
even; ``dequantize``: ``fl32(q - zero_point) * fl32(scale)``.
"""

from __future__ import annotations

import importlib

import numpy as np

from .backend.dtype import dtype as _dtype
from .tensor import Tensor

_dt = importlib.import_module(".backend.dtype", __package__)  # the module (the package
# re-exports the class under the same name)

__all__ = [
    "QTensor",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "qscheme",
    "per_tensor_affine",
    "per_channel_affine",
    "per_tensor_symmetric",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
    "quantize_per_tensor",
    "quantize_per_channel",
    "quantize_per_tensor_dynamic",
    "dequantize",
    "qrange",
]


def _qdtype(name: str, storage, signed: bool) -> _dtype:
    d = _dtype(name, storage, _dt._INT)
    d.is_signed = signed
    _dt._NAMES[name] = d  # for to_dtype("qint8") and pickling (dtype.__reduce__ looks names up)
    return d


qint8 = _qdtype("qint8", np.int8, True)
quint8 = _qdtype("quint8", np.uint8, False)
qint32 = _qdtype("qint32", np.int32, True)
# 4-bit codes, two per byte in torch; ember keeps one code per uint8 (range 0..15).
quint4x2 = _qdtype("quint4x2", np.uint8, False)
_QDTYPES = (qint8, quint8, qint32, quint4x2)
_RANGES = {qint8: (-128, 127), quint8: (0, 255), qint32: (-(2**31), 2**31 - 1), quint4x2: (0, 15)}


def qrange(dtype) -> tuple[int, int]:
    """The (qmin, qmax) of a quantized dtype (also accepts int8 / uint8 / int32)."""
    d = _dt.to_dtype(dtype)
    if d in _RANGES:
        return _RANGES[d]
    plain = {_dt.int8: qint8, _dt.uint8: quint8, _dt.int32: qint32}.get(d)
    if plain is None:
        raise RuntimeError(f"unsupported quantized dtype: {d}")
    return _RANGES[plain]


def _check_qdtype(dtype, fn: str):
    d = _dt.to_dtype(dtype)
    if d not in _QDTYPES:
        raise RuntimeError(
            f"{fn}: dtype must be one of ember.qint8, ember.quint8, ember.qint32, "
            f"ember.quint4x2; got {d}"
        )
    return d


class qscheme:
    """A quantization scheme, ``ember.per_tensor_affine`` etc."""

    __slots__ = ("name",)

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return f"ember.{self.name}"

    def __reduce__(self):
        return (_scheme_by_name, (self.name,))


per_tensor_affine = qscheme("per_tensor_affine")
per_channel_affine = qscheme("per_channel_affine")
per_tensor_symmetric = qscheme("per_tensor_symmetric")
per_channel_symmetric = qscheme("per_channel_symmetric")
per_channel_affine_float_qparams = qscheme("per_channel_affine_float_qparams")
_SCHEMES = {
    s.name: s
    for s in (
        per_tensor_affine,
        per_channel_affine,
        per_tensor_symmetric,
        per_channel_symmetric,
        per_channel_affine_float_qparams,
    )
}


def _scheme_by_name(name: str) -> qscheme:
    return _SCHEMES[name]


class QTensor(Tensor):
    """A quantized tensor: integer codes in ``_data`` plus scale(s) and zero point(s)."""

    # _cache: derived runtime data (the float GEMM operand of a weight), never saved
    __slots__ = ("_qdtype", "_qscheme", "_scale", "_zero_point", "_axis", "_cache")

    @staticmethod
    def _make(codes, qdtype, scheme, scale, zero_point, axis=None) -> QTensor:
        t = QTensor.__new__(QTensor)
        Tensor.__init__(t)
        t._data = codes  # the integer codes as they are (Tensor(ndarray) makes float32)
        t._qdtype, t._qscheme, t._axis = qdtype, scheme, axis
        t._scale, t._zero_point = scale, zero_point
        t._cache = None
        return t

    def _like(self, codes) -> QTensor:
        """Same quantization parameters, new codes (for shape ops and code-space ops)."""
        return QTensor._make(
            codes, self._qdtype, self._qscheme, self._scale, self._zero_point, self._axis
        )

    # ---- the quantized-tensor API ------------------------------------------------------
    @property
    def dtype(self):
        return self._qdtype

    @property
    def is_quantized(self) -> bool:
        return True

    def qscheme(self) -> qscheme:
        return self._qscheme

    def _per_tensor(self, fn: str):
        if self._axis is not None:
            raise RuntimeError(
                f"Expected quantizer->qscheme() == kPerTensorAffine to be true, "
                f"but got false. ({fn} needs a per-tensor quantized tensor)"
            )

    def _per_channel(self, fn: str):
        if self._axis is None:
            raise RuntimeError(
                f"Expected quantizer->qscheme() == kPerChannelAffine to be true, "
                f"but got false. ({fn} needs a per-channel quantized tensor)"
            )

    def q_scale(self) -> float:
        self._per_tensor("q_scale")
        return float(self._scale)

    def q_zero_point(self) -> int:
        self._per_tensor("q_zero_point")
        return int(self._zero_point)

    def q_per_channel_scales(self) -> Tensor:
        self._per_channel("q_per_channel_scales")
        return Tensor._wrap(self._scale.copy())

    def q_per_channel_zero_points(self) -> Tensor:
        self._per_channel("q_per_channel_zero_points")
        return Tensor._wrap(self._zero_point.copy())

    def q_per_channel_axis(self) -> int:
        self._per_channel("q_per_channel_axis")
        return int(self._axis)

    def int_repr(self) -> Tensor:
        """The integer codes as a plain uint8 / int8 / int32 tensor (a copy, as torch)."""
        return Tensor._wrap(self._data.copy())

    def dequantize(self) -> Tensor:
        xp = _xp(self._data)
        q = self._data.astype(xp.float32)
        if self._axis is None:
            out = (q - xp.float32(self._zero_point)) * xp.float32(self._scale)
        else:
            shape = [1] * q.ndim
            shape[self._axis] = -1
            if self._qscheme is per_channel_affine_float_qparams:
                # torch's convention: float zero points, x = (q - zero_point) * scale
                zp = xp.asarray(self._zero_point, dtype=xp.float32).reshape(shape)
                sc = xp.asarray(self._scale, dtype=xp.float32).reshape(shape)
                out = (q - zp) * sc
            else:  # torch multiplies by the float64 per-channel scales, then rounds to float32
                zp = xp.asarray(self._zero_point, dtype=xp.float64).reshape(shape)
                sc = xp.asarray(self._scale, dtype=xp.float64).reshape(shape)
                out = (q - zp) * sc
        return Tensor._wrap(out.astype(xp.float32, copy=False))

    # ---- ops that act on the codes (order-preserving or pure data movement) -------------
    def _shape_op(self, name, *args, **kwargs) -> QTensor:
        if self._axis is not None and name not in ("clone", "contiguous", "detach"):
            raise RuntimeError(f"{name}() on a per-channel quantized tensor is not supported")
        fn = getattr(Tensor, name)
        return self._like(fn(Tensor._wrap(self._data), *args, **kwargs)._data)

    def reshape(self, *shape):
        return self._shape_op("reshape", *shape)

    def view(self, *shape):
        return self._shape_op("view", *shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        return self._shape_op("flatten", start_dim, end_dim)

    def permute(self, *dims):
        return self._shape_op("permute", *dims)

    def transpose(self, dim0: int, dim1: int):
        return self._shape_op("transpose", dim0, dim1)

    def squeeze(self, *dim):
        return self._shape_op("squeeze", *dim)

    def unsqueeze(self, dim: int):
        return self._shape_op("unsqueeze", dim)

    def contiguous(self, memory_format=None):
        return self._like(_xp(self._data).ascontiguousarray(self._data))

    def clone(self, memory_format=None):
        return self._like(self._data.copy())

    def detach(self):
        return self._like(self._data)

    def __getitem__(self, index):
        return self._shape_op("__getitem__", index)

    def _code_op(self, fn) -> QTensor:
        """Apply a float op that commutes with dequantize (max pooling, ...) to the codes."""
        self._per_tensor("this op")
        xp = _xp(self._data)
        out = fn(Tensor._wrap(self._data.astype(xp.float32)))._data
        return self._like(xp.asarray(xp.rint(out)).astype(self._data.dtype))

    def _value_space_op(self, fn) -> QTensor:
        """Like ``_code_op`` for ops that are not order-only (average pooling): run on
        ``code - zero_point`` so padding counts as 0.0 as in torch, then shift back."""
        self._per_tensor("this op")
        xp = _xp(self._data)
        zp = xp.float32(self._zero_point)
        out = fn(Tensor._wrap(self._data.astype(xp.float32) - zp))._data
        lo, hi = qrange(self._qdtype)
        return self._like(xp.clip(xp.rint(out) + zp, lo, hi).astype(self._data.dtype))

    def _float_op(self, fn) -> QTensor:
        """An op torch runs as dequantize -> float kernel -> quantize with the same scale and
        zero point (avg_pool1d, ...)."""
        self._per_tensor("this op")
        out = fn(self.dequantize())
        return quantize_per_tensor(out, self._scale, self._zero_point, self._qdtype)

    def relu(self) -> QTensor:
        """ReLU in code space: max(q, zero_point) (exact, as torch's quantized relu)."""
        self._per_tensor("relu")
        xp = _xp(self._data)
        return self._like(xp.maximum(self._data, self._data.dtype.type(self._zero_point)))

    def to(self, *args, **kwargs):
        from .tensor import _parse_to

        dev, dt, _ = _parse_to(args, dict(kwargs))
        if dt is not None and dt is not self._qdtype:
            raise RuntimeError(
                f"to({dt}) of a quantized tensor is not supported; call .dequantize() first"
            )
        if dev is None or dev == self.device:
            return self
        return self._like(Tensor._wrap(self._data).to(dev)._data)

    def __reduce_ex__(self, protocol):
        # the codes travel as a plain Tensor: ember.save then stores them as raw int8 bytes
        # beside the pickle (a pickled array in protocol 2 would inflate bytes >= 0x80)
        data = self._data if type(self._data) is np.ndarray else self._data.get()
        scale, zp = self._scale, self._zero_point
        if self._axis is not None:  # per-channel arrays travel as tensors too (no NumPy pickle)
            scale, zp = Tensor._wrap(np.asarray(scale)), Tensor._wrap(np.asarray(zp))
        return (
            _rebuild_q,
            (Tensor._wrap(data), self._qdtype.name, self._qscheme.name, scale, zp, self._axis),
        )

    def __deepcopy__(self, memo):
        t = self._like(self._data.copy())
        memo[id(self)] = t
        return t

    def __repr__(self) -> str:
        body = repr(self.dequantize())[:-1]
        if self._axis is None:
            q = (
                f"quantization_scheme={self._qscheme}, scale={float(self._scale)}, "
                f"zero_point={int(self._zero_point)}"
            )
        else:
            q = (
                f"quantization_scheme={self._qscheme}, scale={self.q_per_channel_scales()!r}, "
                f"zero_point={self.q_per_channel_zero_points()!r}, axis={self._axis}"
            )
        return f"{body}, size={tuple(self.shape)}, dtype={self._qdtype}, {q})"

    def __array__(self, dtype=None, copy=None):
        raise TypeError(
            "a quantized tensor has no array of values; call .dequantize() or .int_repr() first"
        )


def _rebuild_q(data, dtname, scheme, scale, zp, axis):
    # also reached from ember.load(weights_only=True): every argument is checked
    import pickle

    data = data._data if isinstance(data, Tensor) else data
    qdtype, qscheme = _dt._NAMES.get(dtname), _SCHEMES.get(scheme)
    if qdtype not in _QDTYPES or qscheme is None or not hasattr(data, "dtype"):
        raise pickle.UnpicklingError(f"bad quantized tensor ({dtname!r}, {scheme!r})")
    if data.dtype != qdtype.np:
        raise pickle.UnpicklingError(f"{dtname} codes stored as {data.dtype}")
    if axis is None:
        scale, zp = float(scale), int(zp)
    elif type(axis) is not int or not 0 <= axis < data.ndim:
        raise pickle.UnpicklingError(f"bad quantization axis {axis!r}")
    else:
        scale, zp = (np.asarray(v._data if isinstance(v, Tensor) else v) for v in (scale, zp))
        if scale.shape != (data.shape[axis],) or zp.shape != scale.shape:
            raise pickle.UnpicklingError(f"bad per-channel parameters for axis {axis}")
    return QTensor._make(data, qdtype, qscheme, scale, zp, axis)


def _xp(a):
    if type(a) is np.ndarray:
        return np
    from .backend import _cupy

    return _cupy.cupy


# The quantizing functions (core/_quantize.py), re-exported under their public path. Imported
# here, after QTensor and the tables they use exist (core/_quantize.py imports them back).
from ._quantize import (  # noqa: E402
    _NUMBA_INT,  # noqa: F401
    _array,  # noqa: F401
    _compiled_quantize,  # noqa: F401
    _make_per_channel_quantized_tensor,  # noqa: F401
    _make_per_tensor_quantized_tensor,  # noqa: F401
    _quantize_codes,  # noqa: F401
    choose_qparams,  # noqa: F401
    dequantize,
    quantize_per_channel,
    quantize_per_tensor,
    quantize_per_tensor_dynamic,
)

# isort: split
# Route functional forms (ember.relu(q), F.hardtanh(q), ember.cat([...])) of quantized tensors:
# Function.apply hands them to this module (imported last: it needs QTensor and the ops).
from . import _quantized_ops  # noqa: E402,F401
