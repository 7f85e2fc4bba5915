"""Compiled (numba) integer GEMV / GEMM kernels for the quantized layers: int8 x int8 -> int32.

NumPy has no integer BLAS, so without these the quantized layers sum their integer codes with
a float32 GEMM (exact, see ``_kernels``), which reads 4 bytes per weight. A single-sample call
is memory-bound: these kernels read the int8 weight itself (1 byte per weight) and accumulate
in int32. LLVM vectorises the inner loop (widen to int16, ``vpmaddwd`` pairs into int32 lanes),
measured here 1.3-1.7x faster than NumPy's float32 GEMV on the same shapes (AVX2, one core).
For many rows a float32 GEMM (or onnxruntime's, ``_ort``) is as fast or faster, so the callers
use the GEMV kernels for few rows only (see ``ROWS_MAX`` and the callers' rules); the
element-wise passes (``quantize_codes``, ``quantize_centered``, ``requantize_planes``,
``scale_add``, ``mul_add``) replace several NumPy passes at every size. ``conv2d_requantize``
is a direct convolution for short reductions and small outputs (``Conv2d._direct_ok``).

The results are the same integers as every other kernel: the int32 accumulator is exact while
``2 K max|a - za| max|w| < 2**31`` (``fits_int32``), and the requantization does the float32
operations of ``_kernels.requantize`` in the same order (no fastmath: no fused multiply-add),
so the output codes are bit for bit those of the NumPy path.

Imported lazily (importing this module imports numba); used when numba is installed (the
``fast`` extra) and ``EMBER_NUMBA`` is not ``0``; without numba ``AVAILABLE`` is False and the
callers keep their NumPy paths. ``cache=True`` keeps the machine code on disk.
"""

from __future__ import annotations

import os

import numpy as np

try:
    from numba import njit
except ImportError:  # numba is optional: the quantized layers keep their float-GEMM kernels
    njit = None

AVAILABLE = njit is not None
_INT32_EXACT = 2**31
# a call with at most this many rows takes the compiled kernels (dynamic Linear, LSTM / GRU);
# more rows: one float32 GEMM was as fast or faster here (8 rows: 0.27 vs 0.30 ms at
# 784 -> 512; 64 rows: 2.1 vs 1.8 ms)
ROWS_MAX = 8


def enabled() -> bool:
    """numba installed and not switched off (``EMBER_NUMBA=0``)."""
    return AVAILABLE and os.environ.get("EMBER_NUMBA", "1") != "0"


def fits_int32(k: int, amax: int, wmax: int) -> bool:
    """Whether every int32 partial sum of ``k`` products ``|a| <= amax``, ``|w| <= wmax`` (and
    the zero-point correction, at most as large) is exact."""
    return 2 * k * amax * wmax < _INT32_EXACT


def _jit(fn):
    return njit(cache=True, nogil=True)(fn) if AVAILABLE else fn


@_jit
def linear_requantize(codes, zp, w, wzp, m, c, lo, hi, out):  # pragma: no cover - compiled
    """``out[r] = rint(clamp(float32(acc) * m + c, lo, hi))`` with the exact int32
    ``acc = (codes[r] - zp) @ (w - wzp)^T``: codes (M, K) uint8 / int8, w (N, K) int8 / uint8,
    wzp (N,) int32, m / c (N,) float32, lo / hi float32 (within +-2**22), out (M, N) the output
    storage."""
    rows, k = codes.shape
    n = w.shape[0]
    a = np.empty(k, np.int16)
    acc = np.empty(n, np.int32)
    # rint for |f| < 2**22 in float32: adding and subtracting 1.5 * 2**23 rounds half to even
    # (the FPU's mode); unlike a libm rint call per element, LLVM vectorises it
    big = np.float32(12582912.0)
    for r in range(rows):
        asum = 0
        for j in range(k):
            a[j] = np.int16(codes[r, j]) - np.int16(zp)
            asum += a[j]
        for i in range(n):
            # the dot product inline, each update truncated to int32 (exact: fits_int32):
            # numba widens int32 sums to int64, and LLVM vectorises the int32 form only
            # (widen to int16, vpmaddwd pairs); the int64 form measured 4.5x slower
            s = np.int32(0)
            for j in range(k):
                s = np.int32(s + np.int32(w[i, j]) * np.int32(a[j]))
            acc[i] = s - wzp[i] * asum
        for i in range(n):
            # the order of _kernels.requantize: multiply, add, clamp, round (all float32)
            f = np.float32(acc[i]) * m[i]
            f = f + c[i]
            f = min(max(f, lo), hi)
            f = (f + big) - big
            out[r, i] = f


@_jit
def dynamic_acc(x, inv, zp, qmax, w, wzp, out):  # pragma: no cover - compiled
    """The dynamic layers' integer part: quantize float32 ``x`` (M, K) as
    ``rint(clamp(float32(float64(x) * inv + zp), 0, qmax))`` (fbgemm's rule, as
    ``dynamic_linear``), then ``out = float32((codes - zp) @ (w - wzp)^T)``, exact."""
    rows, k = x.shape
    n = w.shape[0]
    a = np.empty(k, np.int16)
    top = np.float32(qmax)
    zero = np.float32(0.0)
    zpf = np.float64(zp)
    for r in range(rows):
        asum = 0
        for j in range(k):
            q = np.float32(np.float64(x[r, j]) * inv + zpf)
            if q < zero:
                q = zero
            elif q > top:
                q = top
            a[j] = np.int16(np.rint(q)) - np.int16(zp)
            asum += a[j]
        for i in range(n):
            s = np.int32(0)
            for j in range(k):
                s = np.int32(s + np.int32(w[i, j]) * np.int32(a[j]))
            out[r, i] = np.float32(s - wzp[i] * asum)


@_jit
def dynamic_gates(x, inv, zp, qmax, w, wzp, scale, ws, add, out):  # pragma: no cover
    """``dynamic_acc`` then the dequantization and the input projection of a recurrent step,
    as the NumPy loop does them: ``out = float32(acc) * (float32(scale) * ws) + add`` (ws: the
    weight scales per row, float32; each operation rounded to float32 in that order)."""
    dynamic_acc(x, inv, zp, qmax, w, wzp, out)
    scale_add(out, scale, ws, add)


@_jit
def min_max(x):  # pragma: no cover - compiled
    """(min, max) of a float32 array as ``x.min()`` / ``x.max()`` give them (NaN if any)."""
    flat = x.ravel()
    lo = flat[0]
    hi = flat[0]
    nan = False
    for v in flat:
        nan |= v != v
        lo = min(lo, v)
        hi = max(hi, v)
    if nan:
        return np.float32(np.nan), np.float32(np.nan)
    return lo, hi


@_jit
def quantize_centered(x, inv, zp, qmax, out):  # pragma: no cover - compiled
    """``out = rint(clamp(float32(float64(x) * inv + zp), 0, qmax)) - zp`` as float32 (the
    NumPy loop's five passes in one), x and out (M, K)."""
    rows, k = x.shape
    top = np.float32(qmax)
    zero = np.float32(0.0)
    zpf = np.float64(zp)
    zp32 = np.float32(zp)
    big = np.float32(12582912.0)  # rint by 1.5 * 2**23, as in linear_requantize
    for r in range(rows):
        for j in range(k):
            q = np.float32(np.float64(x[r, j]) * inv + zpf)
            q = min(max(q, zero), top)
            out[r, j] = ((q + big) - big) - zp32


@_jit
def scale_add(y, scale, ws, add):  # pragma: no cover - compiled
    """In place, ``y = y * (scale * ws) + add`` per column (float32, each operation rounded in
    that order): ws (N,), add (M, N) or (1, N) (one row for every row)."""
    rows, n = y.shape
    step = 1 if add.shape[0] == rows else 0
    for r in range(rows):
        ra = r * step
        for i in range(n):
            f = y[r, i] * (scale * ws[i])
            y[r, i] = f + add[ra, i]


@_jit
def mul_add(y, s, b):  # pragma: no cover - compiled
    """In place, ``y = y * s + b`` per column (float32, two roundings): s, b (N,)."""
    rows, n = y.shape
    for r in range(rows):
        for i in range(n):
            f = y[r, i] * s[i]
            y[r, i] = f + b[i]


@_jit
def conv2d_requantize(x, zp, wc, ph, pw, m, c, lo, hi, out):  # pragma: no cover - compiled
    """Direct 2-D convolution (stride 1, dilation 1, one group) of codes ``x`` (B, C, H, W)
    with centered weight codes ``wc`` (O, C, KH, KW) as float32, requantized as
    ``linear_requantize`` into ``out`` (B, O, OH, OW). For few input channels, where an
    im2col GEMM has a short reduction: per output row, each tap adds a scaled input row
    (vectorised along the row). The caller checks ``C * KH * KW * amax * wmax < 2**24``: every
    product and partial sum is then an integer float32 holds exactly, so the float32 sums are
    the int32 accumulator (zero padding is the zero point: centered 0)."""
    nb, ch, hgt, wid = x.shape
    no, _, kh, kw = wc.shape
    oh, ow = out.shape[2], out.shape[3]
    pad = np.zeros((ch, hgt + 2 * ph, wid + 2 * pw), np.float32)
    row = np.empty(ow, np.float32)
    big = np.float32(12582912.0)
    zpf = np.float32(zp)
    for b in range(nb):
        for ci in range(ch):
            for y in range(hgt):
                for xx in range(wid):
                    pad[ci, y + ph, xx + pw] = np.float32(x[b, ci, y, xx]) - zpf
        for o in range(no):
            mo = m[o]
            co = c[o]
            for y in range(oh):
                for xx in range(ow):
                    row[xx] = 0.0
                for ci in range(ch):
                    for dy in range(kh):
                        src = pad[ci, y + dy]
                        for dx in range(kw):
                            wv = wc[o, ci, dy, dx]
                            for xx in range(ow):
                                row[xx] += wv * src[xx + dx]
                for xx in range(ow):
                    f = row[xx] * mo
                    f = f + co
                    f = min(max(f, lo), hi)
                    out[b, o, y, xx] = (f + big) - big


@_jit
def quantize_codes(x, inv, zp, lo, hi, out):  # pragma: no cover - compiled
    """``quantize_per_tensor``'s codes in one pass: ``rint(clamp(float32(float64(x) * inv +
    zp), lo, hi))`` into the int8 / uint8 ``out`` (flat arrays); NaN gives code 0, as NumPy's
    cast of the clamped NaN does here."""
    big = np.float32(12582912.0)  # rint by 1.5 * 2**23, as in linear_requantize
    zpf = np.float64(zp)
    lo32 = np.float32(lo)
    hi32 = np.float32(hi)
    for j in range(x.size):
        q = np.float32(np.float64(x[j]) * inv + zpf)
        if q != q:
            out[j] = 0
        else:
            q = min(max(q, lo32), hi32)
            out[j] = (q + big) - big


@_jit
def requantize_planes(acc, m, c, lo, hi, out):  # pragma: no cover - compiled
    """``_kernels.requantize`` in one pass: ``out = rint(clamp(float32(acc) * m + c, lo, hi))``
    for an accumulator viewed as (outer, C, inner), m / c (C,) float32 (the same roundings in
    the same order as its NumPy passes)."""
    no, nc, ni = acc.shape
    big = np.float32(12582912.0)  # rint by 1.5 * 2**23, as in linear_requantize
    for o in range(no):
        if ni == 1:  # (rows, channels): vectorise along the channels
            for ch in range(nc):
                f = np.float32(acc[o, ch, 0]) * m[ch]
                f = f + c[ch]
                f = min(max(f, lo), hi)
                out[o, ch, 0] = (f + big) - big
        else:
            for ch in range(nc):
                mm = m[ch]
                cc = c[ch]
                for i in range(ni):
                    f = np.float32(acc[o, ch, i]) * mm
                    f = f + cc
                    f = min(max(f, lo), hi)
                    out[o, ch, i] = (f + big) - big
