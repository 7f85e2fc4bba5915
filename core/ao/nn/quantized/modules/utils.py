"""Helpers shared by the quantized modules: weight quantization and input checks."""

from __future__ import annotations

import numpy as np

from ..... import quantized as _q
from .....tensor import Tensor
from .._kernels import xp_of

__all__ = [
    "quantize_weight",
    "check_quantized_input",
    "act_bound",
    "weight_bound",
    "hoist_qparams",
    "weight_codes",
    "set_weight_cache",
]

_PER_TENSOR = (_q.per_tensor_affine, _q.per_tensor_symmetric)


def quantize_weight(weight: Tensor, observer) -> _q.QTensor:
    """Quantize a float weight with the qparams its (already run) observer chose."""
    scale, zp = observer.calculate_qparams()
    dt = observer.dtype
    if dt not in (_q.qint8, _q.quint8, _q.quint4x2):
        raise ValueError(f"unsupported weight dtype {dt}: expected ember.qint8 or ember.quint8")
    if observer.qscheme in _PER_TENSOR:
        return _q.quantize_per_tensor(
            weight.detach(), float(scale._data.reshape(-1)[0]), int(zp._data.reshape(-1)[0]), dt
        )
    return _q.quantize_per_channel(
        weight.detach(),
        scale._data.astype(np.float64),
        zp._data.astype(np.int64),
        observer.ch_axis,
        dt,
    )


def check_quantized_input(x, who: str) -> _q.QTensor:
    if not isinstance(x, _q.QTensor):
        raise RuntimeError(
            f"{who}: expected a quantized input tensor (ember.quint8 / qint8), got "
            f"{'a float tensor' if isinstance(x, Tensor) else type(x).__name__}; "
            f"is a QuantStub missing before this layer?"
        )
    if x._axis is not None:
        raise RuntimeError(f"{who}: expected a per-tensor quantized input")
    return x


def act_bound(x: _q.QTensor) -> int:
    """Largest |code - zero_point| the input's dtype allows."""
    lo, hi = _q.qrange(x._qdtype)
    return max(int(x._zero_point) - lo, hi - int(x._zero_point))


# The float32 GEMM operand of each quantized weight (its exact codes minus zero points), kept
# on the weight (QTensor._cache) while it lives: NumPy / CuPy have no int8 GEMM, so the float
# GEMM reads this copy. The weight itself stays int8 (state_dict, disk);
# set_weight_cache(False) trades speed for memory.
_CACHE = [True]


def set_weight_cache(enabled: bool) -> None:
    """Keep (True, default) or rebuild on every call (False) the float32 GEMM operand of each
    int8 weight; False keeps only the int8 weights in memory, at some speed cost."""
    _CACHE[0] = bool(enabled)


def weight_codes(w: _q.QTensor, transpose: bool = False):
    """(centered float32 codes, per-row scales or a scalar): ``transpose`` gives the (K, N)
    operand of a Linear; cached per weight tensor (see ``set_weight_cache``)."""
    key = (transpose,)
    hit = w._cache if _CACHE[0] else None
    if hit is not None and key in hit:
        return hit[key]
    xp = xp_of(w._data)
    codes = w._data.astype(xp.float32)
    if w._axis is None:
        if w._zero_point:
            codes -= xp.float32(w._zero_point)
        scale = float(w._scale)
    else:
        shape = [1] * codes.ndim
        shape[w._axis] = -1
        codes -= xp.asarray(w._zero_point, dtype=xp.float32).reshape(shape)
        scale = np.asarray(w._scale, dtype=np.float32)
    if transpose:
        codes = xp.ascontiguousarray(codes.T)
    out = (codes, scale)
    if _CACHE[0]:
        if w._cache is None:
            w._cache = {}
        w._cache[key] = out
    return out


def weight_bound(w: _q.QTensor) -> int:
    lo, hi = _q.qrange(w._qdtype)
    zp = np.asarray(w._zero_point)
    return int(max(np.abs(zp - lo).max(), np.abs(hi - zp).max()))


def hoist_qparams(observer) -> tuple[float, int]:
    """(scale, zero_point) of an activation observer or fake quantizer, as Python numbers."""
    s, z = observer.calculate_qparams()
    return float(s._data.reshape(-1)[0]), int(z._data.reshape(-1)[0])


class SavedQParams:
    """``scale`` / ``zero_point`` in the state_dict as 0-d tensors (torch's buffers), kept as
    Python numbers on the module."""

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        destination[prefix + "scale"] = Tensor(np.array(self.scale, np.float32))
        destination[prefix + "zero_point"] = Tensor._wrap(np.array(self.zero_point, np.int64))

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        for key, cast in (("scale", float), ("zero_point", int)):
            if prefix + key in state_dict:
                setattr(self, key, cast(state_dict.pop(prefix + key).item()))
            elif strict:
                missing_keys.append(prefix + key)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, False, missing_keys, unexpected_keys, error_msgs
        )
