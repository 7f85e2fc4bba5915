"""The MT19937 engine behind ``core/_mt_stream.py``, compiled (numba), for large draws.

Why: a dropout mask of 1M elements is 2M 32-bit outputs (torch's ``bernoulli_(p)`` with a
float ``p`` takes a 53-bit uniform per element). NumPy's ``MT19937.random_raw`` makes them one
function call each, ~2.6 ns an output here, and four NumPy passes over 8-byte words then form
the mask: 7.6 ms per 1M elements against torch's 5.8. The transformer workload draws ~4M such
elements a step. Here the engine's twist and tempering run in compiled loops over the 624-word
block, and a Bernoulli draw compares each 53-bit value as it is made, writing one byte.

The state is NumPy's ``MT19937`` state (624 words and the index of the next word; 624 means
"twist first"), read and written back around each call, so the stream is the same word for
word whichever path drew it (``tests/test_mt_kernels.py``). Without numba (or under
``EMBER_NUMBA=0``) ``AVAILABLE`` is False and ``_mt_stream`` keeps NumPy's engine.
``cache=True``: the machine code stays on disk.
"""

from __future__ import annotations

import os

import numpy as np

try:
    from numba import njit
except ImportError:  # numba is optional
    njit = None

AVAILABLE = njit is not None and os.environ.get("EMBER_NUMBA", "1") != "0"

_N, _M = 624, 397
_MATRIX_A = np.uint32(0x9908B0DF)
_UPPER, _LOWER = np.uint32(0x80000000), np.uint32(0x7FFFFFFF)


def _jit(fn):
    return njit(cache=True, nogil=True)(fn) if AVAILABLE else fn


@_jit
def _mix(a, b, c):  # pragma: no cover - compiled
    y = (a & _UPPER) | (b & _LOWER)
    return c ^ (y >> np.uint32(1)) ^ (_MATRIX_A * (y & np.uint32(1)))


@_jit
def _twist(st):  # pragma: no cover - compiled
    """The engine's next block of 624 words, in place (the reference generator's three loops;
    the multiply by the low bit stands for its branch, so that the loops vectorise)."""
    for i in range(_N - _M):
        st[i] = _mix(st[i], st[i + 1], st[i + _M])
    for i in range(_N - _M, _N - 1):
        st[i] = _mix(st[i], st[i + 1], st[i + _M - _N])
    st[_N - 1] = _mix(st[_N - 1], st[0], st[_M - 1])


@_jit
def _temper(y):  # pragma: no cover - compiled
    y ^= y >> np.uint32(11)
    y ^= (y << np.uint32(7)) & np.uint32(0x9D2C5680)
    y ^= (y << np.uint32(15)) & np.uint32(0xEFC60000)
    y ^= y >> np.uint32(18)
    return y


@_jit
def fill_raw(st, pos, out):  # pragma: no cover - compiled
    """The next ``out.size`` 32-bit outputs into ``out`` (uint64, as ``random_raw``); returns
    the new position. ``st`` (uint32[624]) is advanced in place."""
    n, i = out.size, 0
    while i < n:
        if pos == _N:
            _twist(st)
            pos = 0
        take = min(n - i, _N - pos)
        for j in range(take):
            out[i + j] = np.uint64(_temper(st[pos + j]))
        i += take
        pos += take
    return pos


@_jit
def _temper_block(st, lo, tb):  # pragma: no cover - compiled
    for j in range(lo, _N):
        tb[j] = np.uint64(_temper(st[j]))


@_jit
def bernoulli53(st, pos, t, out):  # pragma: no cover - compiled
    """``out[k] = (u53 < t)`` for each element, ``u53`` made of two outputs (the first's low 21
    bits above the second's 32), as ``TorchStream.bernoulli_scalar``; returns the new position.
    The block's words are tempered together (a loop that vectorises), then read in pairs."""
    hi_mask, shift = np.uint64(0x1FFFFF), np.uint64(32)
    tb = np.empty(_N, dtype=np.uint64)
    _temper_block(st, pos, tb)
    k, n = 0, out.size
    while k < n:
        if pos == _N:
            _twist(st)
            _temper_block(st, 0, tb)
            pos = 0
        if pos == _N - 1:  # the pair straddles two blocks
            h = tb[pos]
            _twist(st)
            _temper_block(st, 0, tb)
            out[k] = (((h & hi_mask) << shift) | tb[0]) < t
            k, pos = k + 1, 1
            continue
        m = min(n - k, (_N - pos) // 2)
        for j in range(m):
            out[k + j] = (((tb[pos + 2 * j] & hi_mask) << shift) | tb[pos + 2 * j + 1]) < t
        k += m
        pos += 2 * m
    return pos


@_jit
def uniform24(st, pos, out):  # pragma: no cover - compiled
    """``out[k]`` = the next output's low 24 bits times 2**-24 (float32, exact): torch's float32
    uniform on [0, 1); returns the new position. (Through ``fill_raw`` a block at a time: the
    block stays in L1.)"""
    mask, scale = np.uint64(0xFFFFFF), np.float32(2.0**-24)
    raw = np.empty(_N, dtype=np.uint64)
    n, i = out.size, 0
    while i < n:
        take = min(n - i, _N)
        pos = fill_raw(st, pos, raw[:take])
        for j in range(take):
            out[i + j] = np.float32(raw[j] & mask) * scale
        i += take
    return pos


@_jit
def fisher_yates(perm, z):  # pragma: no cover - compiled
    """Swap ``perm[i]`` with ``perm[i + z[i]]`` for each ``i`` in order (``randperm``)."""
    for i in range(z.shape[0]):
        j = i + z[i]
        t = perm[i]
        perm[i] = perm[j]
        perm[j] = t
