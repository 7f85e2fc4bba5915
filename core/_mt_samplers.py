"""torch's per-element CPU samplers, draw by draw: gamma, Poisson, binomial, geometric, Cauchy,
log-normal, on the Mersenne Twister of :class:`~ember._mt_stream.TorchStream`.

These samplers take a varying number of generator outputs per element (rejection loops), so
each element runs in order on the engine's own words: the loops read the 624 state words and
the position from NumPy's ``MT19937``, twist and temper as ``std::mt19937`` does, and write
the state back. Compiled with numba when it is installed (``EMBER_NUMBA`` not ``0``); the same
functions run in the interpreter otherwise (torch's numbers, ~100x slower; float32
transcendentals then round through float64, which may differ from the C library's float
functions in the last bit now and then).

What torch does per element (ATen ``Distributions.cpp``, ``Distributions.h``,
``DistributionsHelper.h``, ``cpu/DistributionTemplates.h``), all in float64 unless said:

- uniform: 53 bits of a 64-bit draw (two outputs, high word first) times ``2**-53``;
- standard normal: the generator's cached normal if there is one, else Box-Muller on two
  uniforms ``u1, u2``: ``r = sqrt(-2 log1p(-u2))``, return ``r cos(2 pi u1)``, cache
  ``r sin(2 pi u1)``;
- gamma (Marsaglia-Tsang, ``alpha < 1`` boosted by ``u**(1/alpha)``), float32 parameters in
  float32 arithmetic where the C++ is (``alpha - 1.0f/3.0f``, ``1.0f/alpha``);
- Poisson: Hormann's transformed rejection from rate 10, the product of uniforms below it;
- binomial: BTRS when ``n * min(p, 1-p) >= 10``, else inversion by geometric gaps;
- geometric ``ceil(log(u) / log1p(-p))``, Cauchy ``median + sigma tan(pi (u - 1/2))``,
  log-normal ``exp`` of a cached-pair normal.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

import numpy as np

__all__ = ["binomial", "cauchy", "gamma", "geometric", "log_normal", "poisson"]

_TWO_PI = 2.0 * math.pi
_F13 = float(np.float32(1.0) / np.float32(3.0))  # torch's ``1.0f / 3.0f``, a float
_F0331 = float(np.float32(0.0331))  # ``0.0331f``
_TAIL = np.array(
    [
        0.0810614667953272,
        0.0413406959554092,
        0.0276779256849983,
        0.02079067210376509,
        0.0166446911898211,
        0.0138761288230707,
        0.0118967099458917,
        0.0104112652619720,
        0.00925546218271273,
        0.00833056343336287,
    ]
)


# ---- the engine ----------------------------------------------------------------------------
def _next32(key, st):
    """The next 32-bit output; ``key`` the 624 words (int64), ``st[0]`` the position."""
    if st[0] >= 624:
        for i in range(624):
            y = (key[i] & 0x80000000) | (key[(i + 1) % 624] & 0x7FFFFFFF)
            v = key[(i + 397) % 624] ^ (y >> 1)
            if y & 1:
                v ^= 0x9908B0DF
            key[i] = v
        st[0] = 0
    y = key[st[0]]
    st[0] += 1
    y ^= y >> 11
    y ^= (y << 7) & 0x9D2C5680
    y ^= (y << 15) & 0xEFC60000
    y ^= y >> 18
    return y & 0xFFFFFFFF


def _uniform(key, st):
    """``at::uniform_real_distribution<double>(0, 1)``."""
    hi = _next32(key, st)
    lo = _next32(key, st)
    return float(((hi & 0x1FFFFF) << 32) | lo) * 1.1102230246251565e-16  # 2**-53


def _normal(key, st, cache):
    """``at::normal_distribution<double>(0, 1)``: ``cache`` is [valid, value]."""
    if cache[0] != 0.0:
        cache[0] = 0.0
        return cache[1]
    u1 = _uniform(key, st)
    u2 = _uniform(key, st)
    r = math.sqrt(-2.0 * math.log1p(-u2))
    theta = _TWO_PI * u1
    cache[0] = 1.0
    cache[1] = r * math.sin(theta)
    return r * math.cos(theta)


def fma_exact(a: float, b: float, c: float) -> float:
    """``a * b + c`` rounded once (the C++ ``a * b + c`` that the compiler contracts to an
    FMA in torch's AVX2/AVX512 kernels), through fractions: for the interpreter."""
    if _MATH_FMA is not None:
        return _MATH_FMA(a, b, c)
    return float(Fraction(a) * Fraction(b) + Fraction(c))


_MATH_FMA = getattr(math, "fma", None)  # Python 3.13+


_fma = fma_exact  # (rebound to LLVM's fma when compiled)


# ---- gamma ---------------------------------------------------------------------------------
def _gamma_one(alpha, f32, key, st, cache):
    scale = 1.0
    if f32:  # scalar_t float: its own arithmetic where the C++ stays in float
        a32 = np.float32(alpha)
        if a32 < np.float32(1.0):
            if a32 == np.float32(0.0):
                return 0.0
            e32 = np.float32(1.0) / a32
            scale *= math.pow(1.0 - _uniform(key, st), float(e32))
            a32 = a32 + np.float32(1.0)
        d = float(a32 - np.float32(_F13))
    else:
        a = alpha
        if a < 1.0:
            if a == 0.0:
                return 0.0
            scale *= math.pow(1.0 - _uniform(key, st), 1.0 / a)
            a += 1.0
        d = a - _F13
    c = 1.0 / math.sqrt(9.0 * d)
    while True:
        x = _normal(key, st, cache)
        y = 1.0 + c * x
        while y <= 0.0:
            x = _normal(key, st, cache)
            y = 1.0 + c * x
        v = y * y * y
        u = 1.0 - _uniform(key, st)
        xx = x * x
        if u < 1.0 - _F0331 * xx * xx:
            return scale * d * v
        if math.log(u) < 0.5 * xx + d * (1.0 - v + math.log(v)):
            return scale * d * v


def _gamma_fill(alpha, f32, key, st, cache, out):
    for i in range(alpha.shape[0]):
        out[i] = _gamma_one(alpha[i], f32, key, st, cache)


# ---- Poisson -------------------------------------------------------------------------------
def _poisson_one(lam, key, st):
    if lam >= 10.0:
        slam = math.sqrt(lam)
        loglam = math.log(lam)
        b = 0.931 + 2.53 * slam
        a = -0.059 + 0.02483 * b
        invalpha = 1.1239 + 1.1328 / (b - 3.4)
        vr = 0.9277 - 3.6224 / (b - 2)
        while True:
            u = _uniform(key, st) - 0.5
            v = _uniform(key, st)
            us = 0.5 - abs(u)
            k = math.floor((2 * a / us + b) * u + lam + 0.43)
            if us >= 0.07 and v <= vr:
                return k
            if k < 0 or (us < 0.013 and v > us):
                continue
            lhs = math.log(v) + math.log(invalpha) - math.log(a / (us * us) + b)
            if lhs <= -lam + k * loglam - math.lgamma(k + 1.0):
                return k
    if lam == 0.0:
        return 0.0
    enlam = math.exp(-lam)
    x = 0.0
    prod = 1.0
    while True:
        prod *= _uniform(key, st)
        if prod > enlam:
            x += 1.0
        else:
            return x


def _poisson_fill(lam, key, st, out):
    for i in range(lam.shape[0]):
        out[i] = _poisson_one(lam[i], key, st)


# ---- binomial ------------------------------------------------------------------------------
def _tail(k):
    if k < 10.0:
        return _TAIL[int(k)]
    kp1sq = (k + 1.0) * (k + 1.0)
    return (1.0 / 12 - (1.0 / 360 - 1.0 / 1260 / kp1sq) / kp1sq) / (k + 1.0)


def _f(x, f32):
    """A value rounded to the parameters' dtype (float32 or float64)."""
    return float(np.float32(x)) if f32 else x


def _btrs(n, p, f32, key, st):
    stddev = math.sqrt(_f(_f(n * p, f32) * _f(1.0 - p, f32), f32))
    if f32:  # std::sqrt of a float is a float
        stddev = _f(stddev, f32)
    b = 1.15 + 2.53 * stddev
    a = -0.0873 + 0.0248 * b + 0.01 * p
    c = _f(n * p, f32) + 0.5
    v_r = 0.92 - 4.2 / b
    r = _f(p / _f(1.0 - p, f32), f32)
    alpha = (2.83 + 5.1 / b) * stddev
    m = math.floor(_f((n + 1.0) * p, f32))
    while True:
        u = _uniform(key, st) - 0.5
        v = _uniform(key, st)
        us = 0.5 - abs(u)
        k = _f(math.floor((2 * a / us + b) * u + c), f32)
        if k < 0 or k > n:
            continue
        if us >= 0.07 and v <= v_r:
            return k
        v = math.log(v * alpha / (a / (us * us) + b))
        nk1 = _f(_f(n - k, f32) + 1.0, f32)
        bound = (
            (m + 0.5) * math.log((m + 1) / (r * (n - m + 1)))
            + _f(n + 1.0, f32) * math.log((n - m + 1) / nk1)
            + (k + 0.5) * math.log(r * nk1 / _f(k + 1.0, f32))
            + _tail(m)
            + _tail(n - m)
            - _tail(k)
            - _tail(_f(n - k, f32))
        )
        if v <= bound:
            return k


def _inversion(n, p, f32, key, st):
    if f32:
        logprob = float(math.log1p(-np.float32(p)))  # log1pf: a float
    else:
        logprob = math.log1p(-p)
    geom_sum = 0.0
    num = 0.0
    while True:
        geom = math.ceil(math.log(_uniform(key, st)) / logprob)
        geom_sum += geom
        if geom_sum > n:
            return num
        num += 1.0


def _binomial_one(n, p, f32, key, st):
    if n <= 0.0 or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return n
    if p <= 0.5:
        if _f(n * p, f32) >= 10.0:
            return _btrs(n, p, f32, key, st)
        return _inversion(n, p, f32, key, st)
    if p > 0.5:
        q = _f(1.0 - p, f32)
        if _f(n * q, f32) >= 10.0:
            return _f(n - _btrs(n, q, f32, key, st), f32)
        return _f(n - _inversion(n, q, f32, key, st), f32)
    return math.nan


def _binomial_fill(n, p, f32, key, st, out):
    for i in range(n.shape[0]):
        out[i] = _binomial_one(n[i], p[i], f32, key, st)


# ---- the elementwise fills -------------------------------------------------------------------
def _geometric_fill(p, key, st, out):
    scale = math.log1p(-p)
    for i in range(out.shape[0]):
        out[i] = math.ceil(math.log(_uniform(key, st)) / scale)


def _cauchy_fill(median, sigma, key, st, out):
    for i in range(out.shape[0]):
        out[i] = _fma(sigma, math.tan(math.pi * (_uniform(key, st) - 0.5)), median)


def _log_normal_fill(mean, std, key, st, cache, out):
    for i in range(out.shape[0]):
        out[i] = math.exp(_fma(_normal(key, st, cache), std, mean))


_PY = {
    "gamma": _gamma_fill,
    "poisson": _poisson_fill,
    "binomial": _binomial_fill,
    "geometric": _geometric_fill,
    "cauchy": _cauchy_fill,
    "log_normal": _log_normal_fill,
}
_JIT: dict = {}  # the kernels by name, once chosen (compiled, or _PY's without numba)


def _kernels() -> dict:
    if not _JIT:
        table = dict(_PY)
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            try:
                import numba
            except ImportError:  # pragma: no cover - numba is optional
                numba = None
            if numba is not None:
                table = _compile(numba)
        _JIT.update(table)
    return _JIT


def _compile(numba) -> dict:
    """Compile the helpers first, then the fills that call them (numba resolves globals at
    compile time, so the module's names are rebound to the compiled helpers)."""
    jit = numba.njit(cache=True, nogil=True)
    g = globals()
    g["_fma"] = _fma_intrinsic(numba)
    for name in ("_next32", "_uniform", "_normal", "_f", "_tail"):
        g[name] = jit(g[name])
    for name in ("_gamma_one", "_poisson_one", "_btrs", "_inversion", "_binomial_one"):
        g[name] = jit(g[name])
    return {k: jit(fn) for k, fn in _PY.items()}


def _fma_intrinsic(numba):
    """LLVM's ``fma`` on float64, callable from compiled code."""
    from llvmlite import ir
    from numba.extending import intrinsic

    @intrinsic
    def fma(typingctx, a, b, c):
        sig = numba.types.float64(numba.types.float64, numba.types.float64, numba.types.float64)

        def codegen(context, builder, signature, args):
            f64 = ir.DoubleType()
            fnty = ir.FunctionType(f64, [f64, f64, f64])
            fn = builder.module.declare_intrinsic("llvm.fma", [f64], fnty)
            return builder.call(fn, args)

        return sig, codegen

    return fma


def run(stream, kind: str, *args, cache: bool = False) -> np.ndarray:
    """Run sampler ``kind`` on ``stream``'s engine: ``args`` are the kernel's leading
    arguments (parameters, then the output array last); the engine's state, and the cached
    normal when ``cache``, are read before and written back after."""
    key, pos = stream.engine_state()
    key64 = key.astype(np.int64)
    st = np.array([pos], dtype=np.int64)
    *params, out = args
    extra = ()
    if cache:
        c = stream.normal_cache
        extra = (np.array([0.0 if c is None else 1.0, 0.0 if c is None else c]),)
    _kernels()[kind](*params, key64, st, *extra, out)
    stream.set_engine_state(key64.astype(np.uint32), int(st[0]))
    stream.fresh = False
    if cache:
        stream.normal_cache = float(extra[0][1]) if extra[0][0] else None
    return out


# ---- per-op entry points: NumPy arrays in, NumPy arrays out ----------------------------------
def _flat64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).reshape(-1)


def gamma(stream, alpha: np.ndarray) -> np.ndarray:
    """``torch._standard_gamma(alpha)`` for a float32 or float64 ``alpha`` (its dtype out),
    each draw at least the dtype's smallest normal number."""
    dt = alpha.dtype
    f32 = dt != np.float64
    out = run(stream, "gamma", _flat64(alpha), f32, np.empty(alpha.size), cache=True)
    return np.maximum(out.astype(dt), np.finfo(dt).tiny).reshape(alpha.shape)


def poisson(stream, rates: np.ndarray) -> np.ndarray:
    """``torch.poisson(rates)``, in ``rates``' dtype."""
    out = run(stream, "poisson", _flat64(rates), np.empty(rates.size))
    return out.astype(rates.dtype).reshape(rates.shape)


def binomial(stream, count: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """``torch.binomial(count, prob)`` (same shapes and dtype), in that dtype."""
    f32 = count.dtype != np.float64
    out = run(stream, "binomial", _flat64(count), _flat64(prob), f32, np.empty(count.size))
    return out.astype(count.dtype).reshape(count.shape)


def geometric(stream, shape, p: float) -> np.ndarray:
    """``geometric_(p)``'s values (float64): trials up to the first success."""
    return run(stream, "geometric", float(p), np.empty(math.prod(shape))).reshape(shape)


def cauchy(stream, shape, median: float, sigma: float) -> np.ndarray:
    """``cauchy_(median, sigma)``'s values (float64)."""
    out = np.empty(math.prod(shape))
    return run(stream, "cauchy", float(median), float(sigma), out).reshape(shape)


def log_normal(stream, shape, mean: float, std: float) -> np.ndarray:
    """``log_normal_(mean, std)``'s values (float64), the normals one pair at a time."""
    out = np.empty(math.prod(shape))
    return run(stream, "log_normal", float(mean), float(std), out, cache=True).reshape(shape)
