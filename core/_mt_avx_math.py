"""torch's float32 Box-Muller, bit for bit: the AVX2 kernel's ``log`` and ``sincos`` in NumPy.

On x86 CPUs torch's float32 ``normal_`` of 16 elements or more (``randn``, ``nn.init``'s
normals, ``Normal.sample``) runs its AVX2 kernel (also on AVX512 machines: that stub is not
built for AVX512). The kernel takes ``log`` and ``sincos`` from ``avx_mathfun.h``, Cephes'
float32 polynomials, which round otherwise than NumPy's or the C library's; and the compiler
contracts each multiply feeding an add into one fused multiply-add. The functions below
evaluate the same polynomials in the same order, each contracted step rounded once (an exact
float32 FMA through float64 rounded to odd), so the same uniforms give the same normals.
(On CPUs without AVX2, e.g. ARM, torch's own float32 numbers differ from these.)
"""

from __future__ import annotations

import math
import os
import sys

import numpy as np

__all__ = ["box_muller16", "fma32", "fma64"]

_F32 = np.float32
_LOG_P = [
    _F32(v)
    for v in (
        7.0376836292e-2,
        -1.1514610310e-1,
        1.1676998740e-1,
        -1.2420140846e-1,
        1.4249322787e-1,
        -1.6668057665e-1,
        2.0000714765e-1,
        -2.4999993993e-1,
        3.3333331174e-1,
    )
]
_MIN_NORM = np.array([0x00800000], dtype=np.uint32).view(_F32)[0]


def fma32(a, b, c) -> np.ndarray:
    """``a * b + c`` for float32 operands, rounded once to float32: the product is exact in
    float64, the sum rounded to odd there (so the last rounding to float32 is the only one)."""
    p = np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)
    return _odd_sum(p, np.broadcast_to(np.asarray(c, dtype=np.float64), p.shape)).astype(_F32)


def _odd_sum(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a + b`` in float64 rounded to odd (exact sums stay; inexact ones take the odd one of
    the two neighbours)."""
    s = a + b
    bb = s - a
    err = (a - (s - bb)) + (b - bb)  # TwoSum: the rounding error, exact
    bits = s.view(np.int64)
    fix = (err != 0) & ((bits & 1) == 0)
    # one unit in the last place toward the exact sum: up in magnitude when err has s's sign
    step = np.where((err > 0) == (s > 0), 1, -1) * fix
    return (bits + step).view(np.float64)


def _split(a):
    """Veltkamp's split of an array or a float into high and low halves (``hi + lo == a``)."""
    t = a * 134217729.0  # 2**27 + 1 (Veltkamp)
    hi = t - (t - a)
    return hi, a - hi


_SMALL = 32  # below this many elements, Python floats beat a dozen NumPy calls


def fma_list(xs: list, b: float, c: float) -> list:
    """``x * b + c`` rounded once for each Python float ``x``: the exact product as two
    doubles (Dekker), then ``math.fsum``, which rounds the exact sum once (~1 us an element
    against ~20 NumPy calls for any size)."""
    bh, bl = _split(b)
    fsum = math.fsum
    out = []
    for x in xs:
        p = x * b
        t = x * 134217729.0
        xh = t - (t - x)
        xl = x - xh
        out.append(fsum((p, ((xh * bh - p) + xh * bl + xl * bh) + xl * bl, c)))
    return out


def _fma64_small(a: np.ndarray, b: float, c: float) -> np.ndarray:
    """:func:`fma64` with scalar ``b`` and ``c``, element by element in Python floats."""
    return np.array(fma_list(a.reshape(-1).tolist(), b, c), dtype=np.float64).reshape(a.shape)


def fma64(a, b, c) -> np.ndarray:
    """``a * b + c`` in float64 rounded once (Boldo and Melquiond's emulation: the exact
    product as two doubles, its sum with ``c`` as two, the low parts added rounded to odd)."""
    a = np.asarray(a, dtype=np.float64)
    if a.size <= _SMALL and np.ndim(b) == 0 and np.ndim(c) == 0:
        return _fma64_small(a, float(b), float(c))
    if np.ndim(b) == 0 and np.ndim(c) == 0:  # scalars: b split once, not per element
        b, c = float(b), float(c)
        bh, bl = _split(b)
    else:
        b = np.broadcast_to(np.asarray(b, dtype=np.float64), a.shape)
        c = np.broadcast_to(np.asarray(c, dtype=np.float64), a.shape)
        bh, bl = _split(b)
    uh = a * b
    ah, al = _split(a)
    ul = ((ah * bh - uh) + ah * bl + al * bh) + al * bl  # Dekker: a * b == uh + ul exactly
    th = c + uh
    bb = th - c
    tl = (c - (th - bb)) + (uh - bb)
    return th + _odd_sum(ul, tl)


def log_ps(x: np.ndarray) -> np.ndarray:
    """``log256_ps``: the exponent split off, Cephes' degree-9 polynomial on the mantissa."""
    x = np.maximum(x, _MIN_NORM)
    bits = x.view(np.uint32)
    e = ((bits >> 23).astype(np.int32) - 0x7F).astype(_F32) + _F32(1)
    x = ((bits & np.uint32(0x807FFFFF)) | np.uint32(0x3F000000)).view(_F32)  # in [0.5, 1)
    small = x < _F32(0.707106781186547524)
    tmp = np.where(small, x, _F32(0))
    x = x - _F32(1)
    e = e - small.astype(_F32)
    x = x + tmp
    z = x * x
    y = np.full_like(x, _LOG_P[0])
    for p in _LOG_P[1:]:
        y = fma32(y, x, p)
    y = y * x
    y = fma32(y, z, e * _F32(-2.12194440e-4))
    y = fma32(-z, _F32(0.5), y)
    return fma32(e, _F32(0.693359375), x + y)


def sincos_ps(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sincos256_ps``: reduced by multiples of pi/4 in three steps, then Cephes' sine and
    cosine polynomials, picked and signed by the octant."""
    sign_sin = np.signbit(x)
    x = np.abs(x)
    j = (x * _F32(1.27323954473516)).astype(np.int32)  # 4 / pi, truncated
    j = (j + 1) & ~1
    y = j.astype(_F32)
    sign_sin ^= (j & 4) != 0
    poly = (j & 2) == 0
    x = fma32(y, _F32(-0.78515625), x)
    x = fma32(y, _F32(-2.4187564849853515625e-4), x)
    x = fma32(y, _F32(-3.77489497744594108e-8), x)
    sign_cos = (~(j - 2) & 4) != 0
    z = x * x
    yc = fma32(np.full_like(x, _F32(2.443315711809948e-5)), z, _F32(-1.388731625493765e-3))
    yc = fma32(yc, z, _F32(4.166664568298827e-2))
    yc = fma32(yc * z, z, -(z * _F32(0.5))) + _F32(1)
    ys = fma32(np.full_like(x, _F32(-1.9515295891e-4)), z, _F32(8.3321608736e-3))
    ys = fma32(ys, z, _F32(-1.6666654611e-1))
    ys = fma32(ys * z, x, x)
    s, c = np.where(poly, ys, yc), np.where(poly, yc, ys)
    return np.where(sign_sin, -s, s), np.where(sign_cos, -c, c)


# ---- the same, one element at a time, for numba ----------------------------------------------
# Written without branches (selects, and the float's bits through ``_bits`` / ``_from_bits``)
# so that LLVM vectorises the loop: 1M float32 normals 7.7 -> 1.5 ms on one core here.
def _fma_f32(a, b, c):  # (replaced by LLVM's fma when compiled)
    return _F32(np.float64(a) * np.float64(b) + np.float64(c))


def _bits(x):  # (replaced by a bit cast when compiled)
    return np.array([x], dtype=_F32).view(np.uint32)[0]


def _from_bits(b):  # (replaced by a bit cast when compiled)
    return np.array([b], dtype=np.uint32).view(_F32)[0]


def _log1(x):
    x = max(x, _MIN_NORM)
    bits = _bits(x)
    e = _F32(np.int32(bits >> np.uint32(23)) - np.int32(0x7F)) + _F32(1)
    x = _from_bits((bits & np.uint32(0x807FFFFF)) | np.uint32(0x3F000000))  # in [0.5, 1)
    small = x < _F32(0.707106781186547524)
    tmp = x if small else _F32(0)
    x = x - _F32(1)
    e = e - (_F32(1) if small else _F32(0))
    x = x + tmp
    z = x * x
    y = _LOG_P_ARR[0]
    for i in range(1, 9):
        y = _fma_f32(y, x, _LOG_P_ARR[i])
    y = y * x
    y = _fma_f32(y, z, e * _F32(-2.12194440e-4))
    y = _fma_f32(-z, _F32(0.5), y)
    return _fma_f32(e, _F32(0.693359375), x + y)


def _sincos1(x):
    neg = (_bits(x) >> np.uint32(31)) != np.uint32(0)  # (signbit)
    x = abs(x)
    j = np.int32(x * _F32(1.27323954473516))
    j = (j + np.int32(1)) & np.int32(-2)
    y = _F32(j)
    neg = neg != ((j & np.int32(4)) != np.int32(0))
    poly = (j & np.int32(2)) == np.int32(0)
    x = _fma_f32(y, _F32(-0.78515625), x)
    x = _fma_f32(y, _F32(-2.4187564849853515625e-4), x)
    x = _fma_f32(y, _F32(-3.77489497744594108e-8), x)
    neg_cos = (~(j - np.int32(2)) & np.int32(4)) != np.int32(0)
    z = x * x
    yc = _fma_f32(_F32(2.443315711809948e-5), z, _F32(-1.388731625493765e-3))
    yc = _fma_f32(yc, z, _F32(4.166664568298827e-2))
    yc = _fma_f32(yc * z, z, -(z * _F32(0.5))) + _F32(1)
    ys = _fma_f32(_F32(-1.9515295891e-4), z, _F32(8.3321608736e-3))
    ys = _fma_f32(ys, z, _F32(-1.6666654611e-1))
    ys = _fma_f32(ys * z, x, x)
    s = ys if poly else yc
    c = yc if poly else ys
    return (-s if neg else s), (-c if neg_cos else c)


def _box_muller_loop(data, mean, std, out):
    # Per chunk of blocks: the u1 and u2 halves copied into flat arrays, one flat loop over
    # them (this is the loop LLVM vectorises; over the blocks' 8-element halves it did not),
    # and the results put back in the blocks' order.
    two_pi = _F32(2.0 * math.pi)
    nb = data.shape[0] // 16
    step = 512  # blocks a chunk: 4 x 16 KiB of scratch, in L1/L2
    u1 = np.empty(8 * step, dtype=data.dtype)
    u2, o1, o2 = np.empty_like(u1), np.empty_like(u1), np.empty_like(u1)
    for b0 in range(0, nb, step):
        m = min(step, nb - b0)
        for b in range(m):
            for j in range(8):
                u1[8 * b + j] = data[16 * (b0 + b) + j]
                u2[8 * b + j] = data[16 * (b0 + b) + 8 + j]
        for i in range(8 * m):
            radius = _F32(math.sqrt(_F32(-2) * _log1(_F32(1) - u1[i])))
            sin_t, cos_t = _sincos1(two_pi * u2[i])
            o1[i] = _fma_f32(radius * cos_t, std, mean)
            o2[i] = _fma_f32(radius * sin_t, std, mean)
        for b in range(m):
            for j in range(8):
                out[16 * (b0 + b) + j] = o1[8 * b + j]
                out[16 * (b0 + b) + 8 + j] = o2[8 * b + j]


_LOG_P_ARR = np.array(_LOG_P, dtype=_F32)
_LOOP: list = []  # the compiled loop, once built (False: numba missing or disabled)


def _compiled_loop():
    if not _LOOP:
        loop = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            try:
                import numba
            except ImportError:  # pragma: no cover - numba is optional
                numba = None
            if numba is not None:
                loop = _compile(numba)
        _LOOP.append(loop)
    return _LOOP[0]


def _compile(numba):
    from llvmlite import ir
    from numba.extending import intrinsic

    f32, u32 = numba.types.float32, numba.types.uint32

    @intrinsic
    def fma_f32(typingctx, a, b, c):
        def codegen(context, builder, signature, args):
            t = ir.FloatType()
            fn = builder.module.declare_intrinsic("llvm.fma", [t], ir.FunctionType(t, [t] * 3))
            return builder.call(fn, args)

        return f32(f32, f32, f32), codegen

    @intrinsic
    def bits(typingctx, x):
        return u32(f32), lambda context, builder, sig, args: builder.bitcast(
            args[0], ir.IntType(32)
        )

    @intrinsic
    def from_bits(typingctx, b):
        return f32(u32), lambda context, builder, sig, args: builder.bitcast(
            args[0], ir.FloatType()
        )

    jit = numba.njit(cache=True, nogil=True)
    g = globals()
    g["_fma_f32"], g["_bits"], g["_from_bits"] = fma_f32, bits, from_bits
    g["_log1"], g["_sincos1"] = jit(_log1), jit(_sincos1)
    return jit(_box_muller_loop)


def box_muller16(data: np.ndarray, mean: float, std: float) -> np.ndarray:
    """torch's ``NormalFill16<float>`` on float32 uniforms (a multiple of 16): per block of
    16, the first 8 as ``u1``, the next 8 as ``u2``, cosines then sines, ``fma(n, std,
    mean)``. Compiled (numba) from 4096 elements once numba is loaded; before that only from
    2**21 elements, where NumPy's version (~0.3 s a million) would cost more than numba's start
    (~0.7 s): a short script does not load numba for its random weights."""
    n = data.shape[0]
    loop = _compiled_loop() if n >= 1 << 21 or (n >= 4096 and "numba" in sys.modules) else False
    if loop:
        out = np.empty_like(data)
        loop(data, _F32(mean), _F32(std), out)
        return out
    blocks = data.reshape(-1, 2, 8)
    radius = np.sqrt(_F32(-2) * log_ps(_F32(1) - blocks[:, 0]))
    sin_t, cos_t = sincos_ps(_F32(2.0 * math.pi) * blocks[:, 1])
    res = np.empty_like(blocks)
    m, s = _F32(mean), _F32(std)
    res[:, 0] = fma32(radius * cos_t, s, m)
    res[:, 1] = fma32(radius * sin_t, s, m)
    return res.reshape(-1)
