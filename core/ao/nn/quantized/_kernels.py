"""Integer GEMM and convolution on quantized codes: the exact int32 accumulator, requantized.

Two kernels give the same integers. On CPU, ``_ort`` runs onnxruntime's integer kernels (MLAS)
where they apply (see there). Otherwise the float GEMM sums the integer codes: NumPy has no BLAS
for integers (an int32 ``matmul`` measured ~100x slower than sgemm here), and this is exact, not
an approximation: every product and partial sum is an integer, and float32 represents every
integer below 2**24 exactly, so a sum of products of at most |a| * |w| each is exact while
``K * max|a| * max|w| < 2**24`` (514 terms for uint8 x int8) or, checked per call, while this
input's ``max|a - za|`` times the weight's largest per-channel ``sum |w - zw|`` is below 2**24
(``fits_float32``). Longer reductions are split into exact chunks summed in float64. The
result is the int32 accumulator an int8 x int8 -> int32 kernel would produce, bit for bit; it
is then requantized (``acc * a_scale * w_scale + bias`` -> output scale / zero point).
"""

from __future__ import annotations

import numpy as np

from ....backend import _cupy
from ....tensor import Tensor

_F32_EXACT = 2**24
try:
    from numpy._core.umath import clip as _clip
except ImportError:  # NumPy 1.x
    from numpy.core.umath import clip as _clip


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
        part = (a[..., s : s + step] @ wt[s : s + step]).astype(xp.float64)
        acc = part if acc is None else acc + part
    return acc


def int_conv(
    nd: int, a, w, amax: int, wmax: int, stride, padding, dilation, groups: int, fits: bool = False
):
    """Convolution of integer-valued float32 arrays, exactly: float32 when one convolution
    holds the sums exactly (``fits``: the caller has checked a data bound), else float64."""
    from ....nn import functional as F

    conv = F.conv1d if nd == 1 else F.conv2d
    xp = xp_of(a)
    per_channel = int(np.prod(w.shape[2:]))
    cin = w.shape[1]
    step = exact_terms(amax, wmax) // per_channel

    def run(x, ww, dt):
        return conv(
            Tensor._wrap(x.astype(dt, copy=False)),
            Tensor._wrap(ww.astype(dt, copy=False)),
            None,
            stride,
            padding,
            dilation,
            groups,
        )._data

    if fits or cin <= step:
        return run(a, w, xp.float32)
    if groups != 1 or step == 0:  # float64 holds any realistic sum exactly (K < 2**53 / 2**16)
        return run(a, w, xp.float64)
    acc = None
    for s in range(0, cin, step):
        part = run(a[:, s : s + step], w[:, s : s + step], xp.float32).astype(xp.float64)
        acc = part if acc is None else acc + part
    return acc


_LAZY: dict = {}


def _lazy():
    """(_ort module, modules.utils) bound once: importing them here at load time would be
    circular (modules.utils imports this file); an import statement per call costs ~us."""
    if not _LAZY:
        from . import _ort
        from .modules import utils

        _LAZY["ort"], _LAZY["utils"] = _ort, utils
    return _LAZY["ort"], _LAZY["utils"]


def weight_l1(w) -> int:
    """Largest sum of ``|w - zw|`` over one output channel of a quantized weight (cached on the
    weight): with ``|a - za| <= amax``, every partial sum of an output is below
    ``amax * weight_l1(w)``, a much tighter bound than ``K * amax * wmax`` for real weights."""
    cache_on = _lazy()[1]._CACHE[0]
    hit = w._cache if cache_on else None
    if hit is not None and ("l1",) in hit:
        return hit[("l1",)]
    zp = np.asarray(w._zero_point)
    d = (
        w._data.astype(np.int64)
        if type(w._data) is np.ndarray
        else _cupy.cupy.asnumpy(w._data).astype(np.int64)
    )
    if zp.ndim:
        shape = [1] * d.ndim
        shape[w._axis] = -1
        d = d - zp.reshape(shape)
    else:
        d = d - int(zp)
    l1 = int(np.abs(d).reshape(d.shape[0], -1).sum(1).max()) if d.size else 0
    if cache_on:
        if w._cache is None:
            w._cache = {}
        w._cache[("l1",)] = l1
    return l1


def weight_scale(w):
    """The weight's scale as requantize takes it: a float, or a float32 array per output
    channel (cached on the weight, so the float32 codes are not built when onnxruntime runs)."""
    hit = w._cache
    if hit is not None and ("scale",) in hit:
        return hit[("scale",)]
    scale = float(w._scale) if w._axis is None else np.asarray(w._scale, dtype=np.float32)
    if _lazy()[1]._CACHE[0]:
        if w._cache is None:
            w._cache = {}
        w._cache[("scale",)] = scale
    return scale


def fits_float32(codes, zp: int, w, k: int, amax: int, wmax: int) -> bool:
    """Whether one float32 GEMM sums ``(codes - zp) x (w - zw)`` exactly: by the dtype bound
    ``k * amax * wmax`` or, failing that, by this input's own ``max |codes - zp|`` times the
    weight's L1 bound (one cheap reduction over the codes)."""
    if k * amax * wmax < _F32_EXACT or codes.size == 0:
        return True
    l1 = weight_l1(w)  # cached: the dtype's activation bound often suffices with it
    if amax * l1 < _F32_EXACT:
        return True
    hi = int(codes.max())
    a = hi if zp == 0 and codes.dtype == np.uint8 else max(hi - zp, zp - int(codes.min()))
    return a * l1 < _F32_EXACT


def linear_acc(codes, zp: int, w, amax: int, wmax: int):
    """Exact int32 accumulator of ``(codes - zp) @ (w - zw)^T`` for activation codes (M, K)
    and a quantized weight (N, K): int32 from onnxruntime's integer GEMM where it applies
    (``_ort``), else float32 (one exact float GEMM) or float64 (exact chunks)."""
    ort, utils = _lazy()
    acc = ort.linear_acc(codes, zp, w)
    if acc is not None:
        return acc
    xp = xp_of(codes)
    a = centered(codes, zp, xp)
    wt, _ = utils.weight_codes(w, transpose=True)
    if fits_float32(codes, zp, w, codes.shape[-1], amax, wmax):
        return a @ wt
    return int_linear(a, wt, amax, wmax)


def conv_acc(
    nd: int, codes, zp: int, w, amax: int, wmax: int, stride, padding, dilation, groups: int
):
    """Exact accumulator of the convolution of activation codes (N, C, *S) with a quantized
    weight: onnxruntime's int32 ``ConvInteger`` where it applies, else the float path."""
    ort, utils = _lazy()
    acc = ort.conv_acc(codes, zp, w, stride, padding, dilation, groups)
    if acc is not None:
        return acc
    a = centered(codes, zp, xp_of(codes))
    wc, _ = utils.weight_codes(w)
    fits = fits_float32(codes, zp, w, int(np.prod(w.shape[1:])), amax, wmax)
    return int_conv(nd, a, wc, amax, wmax, stride, padding, dilation, groups, fits)


_M_CACHE: dict = {}  # (scales, weight-scale / bias identity, layout) -> the float32 constants
_BLOCK = 1 << 16  # elements per requantize block on CPU: its float32 buffer stays in L2


def _constants(
    xp, a_scale: float, w_scale, bias, out_scale: float, out_zp: int, ndim: int, channel_axis: int
):
    """(m, c): the float32 multiplier(s) ``a_scale * w_scale / out_scale`` and offset(s)
    ``bias / out_scale + out_zp`` (None when all zero), shaped to broadcast along the channel
    axis; cached per layer (the weight scale and bias arrays are held by the entry, so their
    ids stay theirs)."""
    key = (
        a_scale,
        out_scale,
        out_zp,
        w_scale if type(w_scale) is float else id(w_scale),
        None if bias is None else id(bias),
        ndim,
        channel_axis,
        xp is np,
    )
    hit = _M_CACHE.get(key)
    if hit is not None and hit[0] is w_scale and hit[1] is bias:
        return hit[2], hit[3]
    inv = np.float32(1.0) / np.float32(out_scale)
    m = (np.float32(a_scale) * np.asarray(w_scale, dtype=np.float32).reshape(-1)) * inv
    shape = [1] * ndim
    shape[channel_axis] = -1
    m = xp.asarray(m.reshape(shape)) if m.size > 1 else m[0]
    c = None
    if bias is not None:
        cb = bias.astype(np.float32) * inv + np.float32(out_zp)
        if cb.any():  # adding zeros changes no code (only -0.0 -> +0.0)
            c = cb.reshape(shape)
    elif out_zp:
        c = np.float32(out_zp)
    if len(_M_CACHE) > 512:  # scales of a few hundred layers; forget when it grows past
        _M_CACHE.clear()
    _M_CACHE[key] = (w_scale, bias, m, c)
    return m, c


def requantize(
    acc,
    a_scale: float,
    w_scale,
    bias,
    out_scale: float,
    out_zp: int,
    qmin: int,
    qmax: int,
    channel_axis: int,
    relu: bool,
    storage,
):
    """Exact accumulator (int32, or integer-valued float32 / float64) -> output codes:
    ``q = rint(clamp(float32(acc) * m + c))`` with ``m = a_scale * w_scale / out_scale`` and
    ``c = bias / out_scale + out_zp`` (per output channel), all in float32, half to even;
    ``relu`` clamps at the zero point. Two roundings instead of torch's dequantize-then-quantize
    four: the result can differ from torch's by one code where a value falls within float32
    rounding of a .5 tie (not seen in the tests). Whatever the accumulator's dtype, it is
    rounded to float32 first, so every path gives the same codes.

    On CPU the passes run block by block (the float32 block stays in cache) and fuse the
    conversions: the multiply reads the accumulator and writes float32, the rounding writes
    the integer codes (exact: clamped integers)."""
    xp = xp_of(acc)
    m, c = _constants(xp, a_scale, w_scale, bias, out_scale, out_zp, acc.ndim, channel_axis)
    lo = max(qmin, out_zp) if relu else qmin
    if xp is not np:
        f = acc if acc.dtype == xp.float32 else acc.astype(xp.float32)  # ours: in place
        f *= m
        if c is not None:
            f += c
        xp.clip(f, lo, qmax, out=f)
        xp.rint(f, out=f)
        return f.astype(storage)
    lo, hi = np.float32(lo), np.float32(qmax)
    out = np.empty(acc.shape, storage)
    if channel_axis == 1 and acc.ndim >= 2 and acc.size and acc.flags.c_contiguous:
        nbi = _numba()
        if nbi is not None:  # one compiled pass for the blocked NumPy passes below
            m_n, c_n = _channel_constants(m, c, acc.shape[1])
            shape3 = (acc.shape[0], acc.shape[1], acc.size // (acc.shape[0] * acc.shape[1]))
            nbi.requantize_planes(acc.reshape(shape3), m_n, c_n, lo, hi, out.reshape(shape3))
            return out
    n = acc.shape[0] if acc.ndim > 1 else 1
    per = acc.size // n if n else 0
    rows = max(1, _BLOCK // per) if per else n
    if rows >= n:  # one block
        f = acc if acc.dtype == np.float32 else np.empty(acc.shape, np.float32)
        _requantize_block(acc, f, m, c, lo, hi, out)
        return out
    buf = np.empty((rows,) + acc.shape[1:], np.float32)
    for s in range(0, n, rows):
        e = min(n, s + rows)
        _requantize_block(acc[s:e], buf[: e - s], m, c, lo, hi, out[s:e])
    return out


_NB: list = []
_CH_CACHE: dict = {}  # id(m), id(c), channels -> (m, c, m per channel, c per channel)


def _numba():
    """``_numba_int`` when numba is installed and on (``EMBER_NUMBA``), else None."""
    if not _NB:
        from . import _numba_int

        _NB.append(_numba_int)
    return _NB[0] if _NB[0].enabled() else None


def _channel_constants(m, c, n: int):
    """``_constants``' multiplier and offset as float32 arrays of one value per channel (c
    None: zeros, as adding +0.0 changes no code); cached while ``_constants`` holds them."""
    key = (id(m), id(c), n)
    hit = _CH_CACHE.get(key)
    if hit is not None and hit[0] is m and hit[1] is c:
        return hit[2], hit[3]
    m_n = np.broadcast_to(np.asarray(m, np.float32).reshape(-1), (n,)).copy()
    c_n = np.zeros(n, np.float32)
    if c is not None:
        c_n[:] = np.asarray(c, np.float32).reshape(-1)
    if len(_CH_CACHE) > 512:
        _CH_CACHE.clear()
    _CH_CACHE[key] = (m, c, m_n, c_n)
    return m_n, c_n


def _requantize_block(acc, f, m, c, lo, hi, out) -> None:
    """float32(acc) * m (+ c) -> clamp -> rint -> the codes in ``out``; ``f`` is scratch
    (may be ``acc`` itself when that is float32)."""
    if acc is f:  # plain in-place call: the dtype / casting keywords cost ~1 us per call
        np.multiply(f, m, out=f)
    else:
        np.multiply(acc, m, out=f, dtype=np.float32, casting="unsafe")
    if c is not None:
        np.add(f, c, out=f)
    _clip(f, lo, hi, out=f)  # the ufunc: np.clip's wrapper costs
    np.rint(f, out=out, casting="unsafe")


def _dequant_acc(acc, a_scale, w_scale, bias, channel_axis: int):
    xp = xp_of(acc)
    shape = [1] * acc.ndim
    shape[channel_axis] = -1
    ws = (
        xp.asarray(w_scale, dtype=xp.float32).reshape(shape)
        if np.ndim(w_scale)
        else xp.float32(w_scale)
    )
    y = acc if acc.dtype == xp.float32 else acc.astype(xp.float32)  # in place: ours
    y *= xp.float32(a_scale) * ws
    if bias is not None:
        y += bias.astype(xp.float32, copy=False).reshape(shape)
    return y


def dequant_acc(acc, a_scale, w_scale, bias, channel_axis: int):
    """int32 accumulator -> float32 output (dynamic quantization)."""
    return _dequant_acc(acc, a_scale, w_scale, bias, channel_axis)
