"""Integer GEMM and convolution on quantized codes, computed exactly in float units.

NumPy has no BLAS for integers (an int32 ``matmul`` measured ~100x slower than sgemm here), so
the integer products are summed by the float GEMM on the integer codes. That is exact, not an
approximation: every product and partial sum is an integer, and float32 represents every
integer below 2**24 exactly, so a sum of K products of at most |a| * |w| each is exact when
``K * max|a| * max|w| < 2**24``. For uint8 activations minus their zero point (|a| <= 255) and
int8 weights (|w| <= 128) that is K <= 514 terms per float32 GEMM; longer reductions are split
into chunks of at most that many terms, each chunk converted to int32-exact float64 and summed.
The result is the int32 accumulator an int8 x int8 -> int32 kernel would produce, bit for bit;
it is then requantized (``acc * a_scale * w_scale + bias`` -> output scale / zero point).
"""

from __future__ import annotations

import numpy as np

from ....backend import _cupy
from ....tensor import Tensor

_F32_EXACT = 2 ** 24


def xp_of(a):
    return np if type(a) is np.ndarray else _cupy.cupy


def exact_terms(amax: int, wmax: int) -> int:
    """How many int products a float32 sum holds exactly (at least 1)."""
    return max(1, (_F32_EXACT - 1) // max(1, int(amax) * int(wmax)))


def centered(codes, zero_point, xp):
    """Codes minus zero point, as float32 (exact: |value| <= 2**9)."""
    a = codes.astype(xp.float32)
    if zero_point:
        a -= xp.float32(zero_point)
    return a


def int_linear(a, wt, amax: int, wmax: int):
    """``a @ wt`` for integer-valued float32 ``a`` (M, K) and ``wt`` (K, N), exactly: a float32
    array when one GEMM holds the sum exactly, else the float64 sum of exact chunks."""
    xp = xp_of(a)
    k = a.shape[-1]
    step = exact_terms(amax, wmax)
    if k <= step:
        return a @ wt
    acc = None
    for s in range(0, k, step):
        part = (a[..., s:s + step] @ wt[s:s + step]).astype(xp.float64)
        acc = part if acc is None else acc + part
    return acc


def int_conv(nd: int, a, w, amax: int, wmax: int, stride, padding, dilation, groups: int):
    """Convolution of integer-valued float32 arrays, exactly (float64 accumulator)."""
    from ....nn import functional as F

    conv = F.conv1d if nd == 1 else F.conv2d
    xp = xp_of(a)
    per_channel = int(np.prod(w.shape[2:]))
    cin = w.shape[1]
    step = exact_terms(amax, wmax) // per_channel

    def run(x, ww, dt):
        return conv(Tensor._wrap(x.astype(dt, copy=False)), Tensor._wrap(ww.astype(dt, copy=False)),
                    None, stride, padding, dilation, groups)._data

    if cin <= step:
        return run(a, w, xp.float32).astype(xp.float64)
    if groups != 1 or step == 0:  # float64 holds any realistic sum exactly (K < 2**53 / 2**16)
        return run(a, w, xp.float64)
    acc = None
    for s in range(0, cin, step):
        part = run(a[:, s:s + step], w[:, s:s + step], xp.float32).astype(xp.float64)
        acc = part if acc is None else acc + part
    return acc


def requantize(acc, a_scale: float, w_scale, bias, out_scale: float, out_zp: int, qmin: int,
               qmax: int, channel_axis: int, relu: bool, storage):
    """int32 accumulator -> output codes, in place on a float32 copy of the accumulator:
    ``q = rint(clamp(acc * m + c))`` with ``m = a_scale * w_scale / out_scale`` and
    ``c = bias / out_scale + out_zp`` (per output channel), half to even; ``relu`` clamps at
    the zero point. Two passes instead of torch's dequantize-then-quantize four: the result
    can differ from torch's by one code where a value falls within float32 rounding of a .5
    tie (not seen in the tests)."""
    xp = xp_of(acc)
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    inv = np.float32(1.0) / np.float32(out_scale)
    ws = np.asarray(w_scale, dtype=np.float32).reshape(-1)
    m = (np.float32(a_scale) * ws) * inv
    # the accumulator is this call's own array: every step below runs in place on it
    f = acc if acc.dtype == xp.float32 else acc.astype(xp.float32)
    f *= xp.asarray(m.reshape(shape) if m.size > 1 else m[0])
    if bias is not None:
        c = bias.astype(xp.float32).reshape(shape) * xp.float32(inv) + xp.float32(out_zp)
        f += c
    elif out_zp:
        f += xp.float32(out_zp)
    lo = max(qmin, out_zp) if relu else qmin
    xp.clip(f, lo, qmax, out=f)
    xp.rint(f, out=f)
    return f.astype(storage)


def _dequant_acc(acc, a_scale, w_scale, bias, channel_axis: int):
    xp = xp_of(acc)
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    ws = xp.asarray(w_scale, dtype=xp.float32).reshape(shape) if np.ndim(w_scale) else \
        xp.float32(w_scale)
    y = acc if acc.dtype == xp.float32 else acc.astype(xp.float32)  # in place: ours
    y *= xp.float32(a_scale) * ws
    if bias is not None:
        y += bias.astype(xp.float32, copy=False).reshape(shape)
    return y


def dequant_acc(acc, a_scale, w_scale, bias, channel_axis: int):
    """int32 accumulator -> float32 output (dynamic quantization)."""
    return _dequant_acc(acc, a_scale, w_scale, bias, channel_axis)
