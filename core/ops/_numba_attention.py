"""Compiled (numba) row kernels of the fused attention: the softmax of the scores in place and
the softmax's backward ``ds = pd * gp - p * rowsum(pd * gp)`` in place, each a pass or two
over a row that stays in cache, with the vectorised float32 exponential of ``_numba_act``
(``_exp32``'s arithmetic for float32, specialised to the non-positive arguments a
softmax has: ``_exp_nonpos``; libm's ``exp`` for float64).

Why: ``np.exp`` costs ~4.4 ns per float32 element here and the NumPy softmax makes five passes
(max, subtract, exp, sum, scale) plus a temporary per reduction; on b1 h4 L2048 d16 causal the
softmax alone took more time than torch's whole forward. The causal variants take the row
offset ``i0`` of a block of query rows and touch only the keys ``[0, i0 + r]`` of its row
``r``: the triangular bias add is gone, the masked tail is written as zeros.

Imported lazily by ``attention_kernels.kernels`` (importing this module imports numba); without
numba it still imports, with ``AVAILABLE`` False, and the NumPy code runs instead.
"""

from __future__ import annotations

import math

import numpy as np

from . import _numba_act as _act
from ._numba_act import AVAILABLE, _jit

__all__ = [
    "AVAILABLE",
    "softmax_",
    "causal_softmax_",
    "softmax_grad_",
    "causal_softmax_grad_",
    "causal_exp_",
    "causal_exp_grad_",
]


@_jit
def _rowmax(row, end):  # pragma: no cover - compiled
    """max(row[:end]), end >= 1, in eight running maxima: a single select chain does not
    vectorise without ``nnan`` (13 vs 31 ms on 16.7M float32; NumPy's ``max``: 8 ms). A NaN
    may be missed here; the exponential pass then turns the whole row into NaN anyway."""
    m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = row[0]
    j = 0
    while j + 8 <= end:
        m0 = row[j] if row[j] > m0 else m0
        m1 = row[j + 1] if row[j + 1] > m1 else m1
        m2 = row[j + 2] if row[j + 2] > m2 else m2
        m3 = row[j + 3] if row[j + 3] > m3 else m3
        m4 = row[j + 4] if row[j + 4] > m4 else m4
        m5 = row[j + 5] if row[j + 5] > m5 else m5
        m6 = row[j + 6] if row[j + 6] > m6 else m6
        m7 = row[j + 7] if row[j + 7] > m7 else m7
        j += 8
    while j < end:
        m0 = row[j] if row[j] > m0 else m0
        j += 1
    m0 = m1 if m1 > m0 else m0
    m2 = m3 if m3 > m2 else m2
    m4 = m5 if m5 > m4 else m4
    m6 = m7 if m7 > m6 else m6
    m0 = m2 if m2 > m0 else m0
    m4 = m6 if m6 > m4 else m4
    return m4 if m4 > m0 else m0


def _exp_nonpos(v):  # pragma: no cover - replaced by the overload inside compiled code
    return math.exp(v)


if AVAILABLE:
    _f32 = np.float32

    def _exp32_nonpos(v):  # pragma: no cover - compiled
        # ``_numba_act._exp32`` for lo <= v <= 0 only: there 2^n is a normal number, so one
        # scale replaces the general kernel's clamps and its two-factor 2^n (kept for
        # overflow and subnormal results); the same bits there. Below lo the result is
        # garbage, which ``_exp_under`` replaces by zero (a NaN stays NaN). 0.70 -> 0.57 ns a
        # score in ``causal_exp_`` (float32, one core).
        n = np.floor(v * _f32(_act._LOG2E) + _f32(0.5))
        r = v - n * _f32(_act._LN2_HI)
        r = r - n * _f32(_act._LN2_LO)
        c = _act._EXP_C
        p = _f32(c[0])
        p = p * r + _f32(c[1])
        p = p * r + _f32(c[2])
        p = p * r + _f32(c[3])
        p = p * r + _f32(c[4])
        p = p * r + _f32(c[5])
        p = p * r * r + r + _f32(1.0)
        return p * np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)

    @_act.overload(_exp_nonpos, jit_options={"fastmath": _act._FLAGS, "error_model": "numpy"})
    def _exp_nonpos_ol(v):
        if isinstance(v, _act.types.Float) and v.bitwidth == 32:
            return _exp32_nonpos
        return lambda v: math.exp(v)


@_jit
def _exp_under(t, lo, zero):  # pragma: no cover - compiled
    """exp(t) for t <= 0, flushed to zero below ``lo`` (exp(lo) is the dtype's smallest normal
    number): a subnormal result costs a microcode assist of ~100 cycles, so masked (-inf)
    scores made the row kernel ~2x slower. A NaN stays NaN (comparisons with it are false)."""
    e = _exp_nonpos(t)  # (no clamp: the select below discards what lies under lo)
    return zero if t < lo else e


@_jit
def softmax_(s, masked, safe, lo):  # pragma: no cover - compiled
    """Rows of the 2-D C-contiguous ``s`` in place. ``masked``: a row whose every score is
    -inf gets zero weight when ``safe``, else NaN (as ``attention_math._softmax_``). ``lo``:
    see ``_exp_under``."""
    n, d = s.shape
    zero = s.dtype.type(0)
    one = s.dtype.type(1)
    for i in range(n):
        row = s[i]
        mx = _rowmax(row, d)
        if masked and mx == -np.inf:
            mx = zero
        tot = zero
        for j in range(d):
            e = _exp_under(row[j] - mx, lo, zero)
            row[j] = e
            tot += e
        if masked and tot == zero:
            r = zero if safe else s.dtype.type(np.nan)
        else:
            r = one / tot
        for j in range(d):
            row[j] *= r


@_jit
def causal_softmax_(s, i0, lo):  # pragma: no cover - compiled
    """The (n, R, C) C-contiguous scores of query rows ``[i0, i0 + R)`` against keys
    ``[0, C)``, in place: row ``r`` is the softmax over keys ``[0, i0 + r]``, zeros after
    (``causal_exp_`` and the scale pass it leaves to its caller)."""
    n, R, C = s.shape
    inv = np.empty((n, R), s.dtype)
    causal_exp_(s, i0, lo, inv)
    for b in range(n):
        for r in range(R):
            for j in range(min(i0 + r + 1, C)):
                s[b, r, j] *= inv[b, r]


@_jit
def causal_exp_(s, i0, lo, inv):  # pragma: no cover - compiled
    """``causal_softmax_`` without its scale pass: row ``r`` of block ``b`` becomes
    ``exp(s - max)`` over keys ``[0, i0 + r]`` (zeros after) and ``inv[b, r]`` its reciprocal
    sum; the caller scales the head-dim-wide output rows instead of the key-wide weights."""
    n, R, C = s.shape
    zero = s.dtype.type(0)
    one = s.dtype.type(1)
    for b in range(n):
        for r in range(R):
            row = s[b, r]
            end = min(i0 + r + 1, C)
            mx = _rowmax(row, end)
            tot = zero
            for j in range(end):
                e = _exp_under(row[j] - mx, lo, zero)
                row[j] = e
                tot += e
            inv[b, r] = one / tot
            for j in range(end, C):
                row[j] = zero


@_jit
def causal_exp_grad_(gp, e, i0, inv):  # pragma: no cover - compiled
    """The backward of ``causal_exp_``'s weights ``p = e * inv``: ``gp`` holds ``inv * (g v^T)``
    (the output gradient's rows scaled first) and becomes the scores' gradient in place,
    ``e * (gp - inv * rowsum(gp * e))``; zeros after key ``i0 + r``."""
    n, R, C = gp.shape
    zero = gp.dtype.type(0)
    for b in range(n):
        for r in range(R):
            g, ei = gp[b, r], e[b, r]
            end = min(i0 + r + 1, C)
            tot = zero
            for j in range(end):
                tot += g[j] * ei[j]
            c = tot * inv[b, r]
            for j in range(end):
                g[j] = ei[j] * (g[j] - c)
            for j in range(end, C):
                g[j] = zero


@_jit
def softmax_grad_(gp, p, pd):  # pragma: no cover - compiled
    """``gp`` (2-D, the gradient of the weights after dropout) in place becomes the scores'
    gradient ``t - p * rowsum(t)``, ``t = gp * pd`` (``pd`` is ``p`` without dropout)."""
    n, d = gp.shape
    zero = gp.dtype.type(0)
    for i in range(n):
        g, pi, di = gp[i], p[i], pd[i]
        tot = zero
        for j in range(d):
            t = g[j] * di[j]
            g[j] = t
            tot += t
        for j in range(d):
            g[j] -= pi[j] * tot


@_jit
def causal_softmax_grad_(gp, p, i0):  # pragma: no cover - compiled
    """``softmax_grad_`` (no dropout) on the (n, R, C) blocks of ``causal_softmax_``: keys
    after ``i0 + r`` have zero weight, so their gradient is written as zero."""
    n, R, C = gp.shape
    zero = gp.dtype.type(0)
    for b in range(n):
        for r in range(R):
            g, pi = gp[b, r], p[b, r]
            end = min(i0 + r + 1, C)
            tot = zero
            for j in range(end):
                tot += g[j] * pi[j]
            for j in range(end):
                g[j] = pi[j] * (g[j] - tot)
            for j in range(end, C):
                g[j] = zero
