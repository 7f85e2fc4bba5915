"""Compiled (numba) activation kernels: GELU (exact and tanh), SiLU, sigmoid, and softmax /
log_softmax over rows, forward and backward, each one pass (two for the row kernels) over the
data.

The gain is the exponential. NumPy 2.4 on an AVX2 machine has no vectorised float32 ``exp``
(~4 ns per element, more than torch's whole GELU forward), and numba without Intel's SVML calls
scalar ``expf``. ``_exp32`` below is a branch-free Cody-Waite reduction, a degree-7 polynomial and
the power of two built in the exponent bits; LLVM vectorises it (8 lanes), ~1.3 ns per element
on one core, relative error <= 4e-7 (3-6 float32 ulp; subnormal results within a few ulp).
float64 keeps ``math.exp`` and ``math.erfc`` (libm): it is the dtype gradcheck runs in, so the
float64 kernels check the fused formulas at full precision.

fastmath is the subset without ``nnan`` / ``ninf``: the clamps and selects must keep NaN and
infinity behaving as in PyTorch (a NaN input gives NaN, ``-inf`` logits give probability 0).

Imported lazily by ``act_kernels.compiled`` (importing this module imports numba); without
numba it still imports, with ``AVAILABLE`` False. ``cache=True``: machine code stays on disk.
"""

from __future__ import annotations

import math

import numpy as np

try:
    from numba import njit, types
    from numba.extending import overload
except ImportError:  # numba is optional: the NumPy kernels are used instead
    njit = None

AVAILABLE = njit is not None

_FLAGS = {"reassoc", "contract", "arcp", "nsz", "afn"}

_LOG2E = 1.4426950408889634
_LN2_HI = 0.693145751953125  # ln 2 split so that n * _LN2_HI is exact for |n| < 2^8
_LN2_LO = 1.428606765330187e-06
# minimax coefficients of (exp(r) - 1 - r) / r^2 on |r| <= ln2 / 2 (Cephes expf)
_EXP_C = (
    1.9875691500e-4,
    1.3981999507e-3,
    8.3334519073e-3,
    4.1665795894e-2,
    1.6666665459e-1,
    5.0000001201e-1,
)
_SQRT1_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_PI = math.sqrt(2.0 / math.pi)
_GELU_A = 0.044715
# Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7): erfc(z) = t P(t) exp(-z^2), t = 1/(1 + p z)
_AS_P = 0.3275911
_AS = (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592)


def jit_with(flags):
    """A decorator compiling a kernel with fastmath ``flags`` (cached, GIL released, NumPy's
    error model); the identity without numba."""

    def jit(fn):
        if not AVAILABLE:
            return fn
        return njit(cache=True, fastmath=flags, nogil=True, error_model="numpy")(fn)

    return jit


_jit = jit_with(_FLAGS)


def fexp(v):  # pragma: no cover - replaced by the overload inside compiled code
    return math.exp(v)


def recip1p(e):  # pragma: no cover - 1 / (1 + e), replaced by the overload in compiled code
    return 1.0 / (1.0 + e)


def phi_e(v, e):  # pragma: no cover - Phi(v) given e = exp(-v^2 / 2), replaced by the overload
    return 0.5 * math.erfc(-v * _SQRT1_2)


if AVAILABLE:
    f32 = np.float32

    def _exp32(v):  # pragma: no cover - compiled
        # clamp with selects that keep NaN (a comparison with NaN is false); beyond the clamps
        # the result is 0 (below exp(-103.3), under the smallest subnormal) or inf
        c = f32(89.0) if v > f32(89.0) else v
        c = f32(-104.0) if c < f32(-104.0) else c
        n = np.floor(c * f32(_LOG2E) + f32(0.5))
        r = c - n * f32(_LN2_HI)
        r = r - n * f32(_LN2_LO)
        p = f32(_EXP_C[0])
        p = p * r + f32(_EXP_C[1])
        p = p * r + f32(_EXP_C[2])
        p = p * r + f32(_EXP_C[3])
        p = p * r + f32(_EXP_C[4])
        p = p * r + f32(_EXP_C[5])
        p = p * r * r + r + f32(1.0)
        # 2^n as 2^n1 * 2^n2 (n1 added to p's exponent bits, 2^n2 built in a float's): each
        # factor is normal, so subnormal results and the overflow to inf come out of the one
        # product (one product: fastmath may reorder a chain of them)
        ni = np.int32(n)
        n1 = ni >> np.int32(1)
        n2 = ni - n1
        p1 = np.int32(np.float32(p).view(np.int32) + (n1 << np.int32(23))).view(np.float32)
        s2 = np.int32((n2 + np.int32(127)) << np.int32(23)).view(np.float32)
        return p1 * s2

    def _phi_e32(v, e):  # pragma: no cover - compiled
        # the standard normal CDF (Abramowitz-Stegun erfc) with exp(-v^2 / 2) given: GELU's
        # output and derivative share that one exp (both kernels, so they agree bitwise)
        z = abs(v) * f32(_SQRT1_2)
        t = f32(1.0) / (f32(1.0) + f32(_AS_P) * z)
        p = f32(_AS[0])
        p = p * t + f32(_AS[1])
        p = p * t + f32(_AS[2])
        p = p * t + f32(_AS[3])
        p = p * t + f32(_AS[4])
        q = f32(0.5) * t * p * e
        return f32(1.0) - q if v > f32(0.0) else q

    # No ``reassoc`` inside Phi: the output-only kernel could otherwise regroup ``v * Phi``
    # across its factors (it did, for results near the subnormal range) where the
    # output+derivative kernel, which also uses ``e`` elsewhere, does not.
    @overload(phi_e, jit_options={"fastmath": _FLAGS - {"reassoc"}, "error_model": "numpy"})
    def _phi_e_ol(v, e):
        if isinstance(v, types.Float) and v.bitwidth == 32:
            return _phi_e32
        return lambda v, e: 0.5 * math.erfc(-v * _SQRT1_2)

    # Without ``arcp``/``reassoc`` on this division, LLVM cannot fold ``v * (1 / (1 + e))`` into
    # ``v / (1 + e)`` in the output-only kernels (where the reciprocal has one use) while the
    # output+derivative kernels keep it: both kernels then give the same bits.
    @overload(recip1p, jit_options={"fastmath": {"contract", "nsz", "afn"}, "error_model": "numpy"})
    def _recip1p_ol(e):
        return lambda e: type(e)(1.0) / (type(e)(1.0) + e)

    @overload(fexp, jit_options={"fastmath": _FLAGS, "error_model": "numpy"})
    def _fexp_ol(v):
        if isinstance(v, types.Float) and v.bitwidth == 32:
            return _exp32
        return lambda v: math.exp(v)


# ---- elementwise: flat contiguous arrays ------------------------------------------------
# Constants reach the kernels in the data's dtype through ``k`` (see ``consts``): a Python float
# literal would promote float32 arithmetic to float64 (half the vector lanes).
def consts(dtype):
    """The constants array the kernels read: 0, 1/2, 1, 2, sqrt(2/pi), 0.044715, 1/sqrt(2 pi)."""
    return np.array([0.0, 0.5, 1.0, 2.0, _SQRT_2_PI, _GELU_A, _INV_SQRT_2PI], dtype=dtype)


@_jit
def gelu_forward(x, out, k):  # pragma: no cover
    # Phi from the same exp as gelu_forward_der: outputs with and without grad agree bitwise
    # (activation checkpointing recomputes a forward and compares; tests/test_activation_checkpoint)
    half = k[1]
    for i in range(x.size):
        v = x[i]
        out[i] = v * phi_e(v, fexp(-half * v * v))


@_jit
def gelu_forward_der(x, out, der, k):  # pragma: no cover
    # the derivative Phi(v) + v pdf(v) alongside: the backward is then one product
    # one exp per element: exp(-v^2 / 2) serves Phi (float32: its erfc) and the pdf
    half, c = k[1], k[6]
    for i in range(x.size):
        v = x[i]
        e = fexp(-half * v * v)
        p = phi_e(v, e)
        out[i] = v * p
        der[i] = p + v * e * c


@_jit
def gelu_tanh_forward(x, out, k):  # pragma: no cover
    two, c, a = k[3], k[4], k[5]
    for i in range(x.size):
        v = x[i]
        v2 = v * v
        # (1 + tanh u) / 2 = 1 / (1 + exp(-2u)), so GELU = v s. The expression is
        # gelu_tanh_forward_der's, step for step, so both give the same bits (a checkpointed
        # region recomputes the activation without grad and must match).
        s = recip1p(fexp(-two * c * (v + a * v2 * v)))
        out[i] = v * s


@_jit
def gelu_tanh_forward_der(x, out, der, k):  # pragma: no cover
    one, two, c, a = k[2], k[3], k[4], k[5]
    a3 = a + a + a
    for i in range(x.size):
        v = x[i]
        v2 = v * v
        s = recip1p(fexp(-two * c * (v + a * v2 * v)))  # (1 + tanh u) / 2
        out[i] = v * s
        # d/dv [v s] = s + 2 v s (1 - s) u'   ((1 - tanh^2 u) / 2 = 2 s (1 - s))
        der[i] = s + two * v * s * (one - s) * c * (one + a3 * v2)


@_jit
def sigmoid_forward(x, out, k):  # pragma: no cover
    for i in range(x.size):
        out[i] = recip1p(fexp(-x[i]))  # exp(-x) = inf gives 0: no branch


@_jit
def sigmoid_backward(out, g, res, k):  # pragma: no cover
    # ``g`` has out's size, or one element: a broadcast gradient (``y.sum().backward()``)
    one = k[2]
    step = 1 if g.size == out.size else 0
    for i in range(out.size):
        o = out[i]
        res[i] = g[i * step] * (o * (one - o))


@_jit
def silu_forward(x, out, k):  # pragma: no cover
    for i in range(x.size):
        v = x[i]
        s = recip1p(fexp(-v))  # as silu_forward_der computes it: the same bits
        out[i] = v * s


@_jit
def silu_forward_der(x, out, der, k):  # pragma: no cover
    one = k[2]
    for i in range(x.size):
        v = x[i]
        s = recip1p(fexp(-v))
        out[i] = v * s
        der[i] = s * (one + v * (one - s))


@_jit
def silu_backward(x, g, res, k):  # pragma: no cover
    # the derivative recomputed from x (one exp) and applied: what a backward that saved only
    # x reads; ``g`` has x's size, or one element (a broadcast gradient), as sigmoid_backward
    one = k[2]
    step = 1 if g.size == x.size else 0
    for i in range(x.size):
        v = x[i]
        s = recip1p(fexp(-v))
        res[i] = g[i * step] * (s * (one + v * (one - s)))


# ---- rows: 2-D C-contiguous arrays, over the last dim ------------------------------------
@_jit
def _row_max(x, i, d):  # pragma: no cover
    # selects, not ``max``: a NaN found first stays (any NaN makes the row NaN either way). Four
    # independent chains: one chain is latency-bound (~0.9 ns per element; 65536 x 128
    # log_softmax forward 20.1 -> 10.5 ms, 4096 x 1024 10.4 -> 6.1). Rows from
    # ``act_kernels._NUMPY_MAX_MIN_D`` still take NumPy's vectorised row max.
    m0 = x[i, 0]
    m1, m2, m3 = m0, m0, m0
    j = 0
    while j + 4 <= d:
        a, b, c, e = x[i, j], x[i, j + 1], x[i, j + 2], x[i, j + 3]
        m0 = a if a > m0 else m0
        m1 = b if b > m1 else m1
        m2 = c if c > m2 else m2
        m3 = e if e > m3 else m3
        j += 4
    while j < d:
        a = x[i, j]
        m0 = a if a > m0 else m0
        j += 1
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    return m2 if m2 > m0 else m0


@_jit
def softmax_forward(x, rmax, have_max, out, k):  # pragma: no cover
    # rmax: the row maxima when have_max (any NaN in a row makes the row NaN either way)
    m, d = x.shape
    zero, one = k[0], k[2]
    for i in range(m):
        mx = rmax[i] if have_max else _row_max(x, i, d)
        s = zero
        for j in range(d):
            e = fexp(x[i, j] - mx)
            out[i, j] = e
            s += e
        r = one / s
        for j in range(d):
            out[i, j] *= r


@_jit
def softmax_backward(g, y, gx, k):  # pragma: no cover
    m, d = y.shape
    zero = k[0]
    for i in range(m):
        s = zero
        for j in range(d):
            s += g[i, j] * y[i, j]
        for j in range(d):
            gx[i, j] = y[i, j] * (g[i, j] - s)


@_jit
def log_softmax_forward(x, rmax, have_max, out, k):  # pragma: no cover
    m, d = x.shape
    zero = k[0]
    for i in range(m):
        mx = rmax[i] if have_max else _row_max(x, i, d)
        s = zero
        for j in range(d):
            s += fexp(x[i, j] - mx)
        lse = mx + np.log(s)
        for j in range(d):
            out[i, j] = x[i, j] - lse


@_jit
def log_softmax_backward(g, y, gx, k):  # pragma: no cover
    # g - exp(y) * sum(g): the softmax recomputed from the output (as PyTorch), no saved copy
    m, d = y.shape
    zero = k[0]
    for i in range(m):
        s = zero
        for j in range(d):
            s += g[i, j]
        for j in range(d):
            gx[i, j] = g[i, j] - fexp(y[i, j]) * s


# ---- ReLU: exact selects (no fastmath: NaN, -0. and the gradient's bits as NumPy's) --------
def _jit_exact(fn):
    return njit(cache=True, nogil=True)(fn) if AVAILABLE else fn


@_jit_exact
def relu_forward(x, out):  # pragma: no cover
    """``np.maximum(x, 0)``: NaN kept (its bits), -0. and negatives to 0."""
    for i in range(x.size):
        v = x[i]
        out[i] = v if (v > 0 or v != v) else 0


@_jit_exact
def relu_backward(out, g, res):  # pragma: no cover
    """``np.where(out <= 0, 0, g)``: torch's ``threshold_backward`` (NaN passes ``g``)."""
    for i in range(out.size):
        res[i] = 0 if out[i] <= 0 else g[i]


# ReLU with a byte mask of its live units (session 25, h3): backward needs only whether each
# output is ``> 0`` (or NaN), so a large ReLU keeps this mask, 1 byte an element, instead of its
# float output: the cnn workload's first ReLU kept 6.1 MiB alive through the backward of the
# layers above it for what 1.5 MiB says.
@_jit_exact
def relu_forward_live(x, out, live):  # pragma: no cover
    """``relu_forward`` that also writes ``live = not (out <= 0)`` (NaN counts as live)."""
    for i in range(x.size):
        v = x[i]
        keep = v > 0 or v != v
        out[i] = v if keep else 0
        live[i] = keep


@_jit_exact
def relu_backward_live(live, g, res):  # pragma: no cover
    """``relu_backward`` from the mask: ``g`` where live, else 0 (bitwise the same result)."""
    for i in range(g.size):
        res[i] = g[i] if live[i] else 0
