"""Compiled (numba) 2-D depthwise 3x3 convolution at stride 1: forward and weight gradient with
all nine taps in one pass over each output row (``conv_depthwise``).

``_numba_depthwise``'s stride-1 kernels make one pass per tap over a (sample, channel) plane
held in a buffer: each pass loads and stores the buffer, two memory operations per
multiply-add. Here an output row is summed over the nine taps in registers and stored once
(the forward: 9 loads, 9 multiply-adds and 1 store per vector of outputs), and the weight
gradient keeps the nine tap sums as nine vector reductions over a row of g (10 loads per 9
multiply-adds). The input gradient is the forward of g with the flipped kernel
(``conv_depthwise``), so it takes this kernel too.

Arrays are C-contiguous and of one float dtype; ``AVAILABLE`` is False without numba.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit, prange
except ImportError:  # numba is optional: conv_depthwise keeps its other kernels
    njit = None

AVAILABLE = njit is not None


def _jit(fn):
    if not AVAILABLE:
        return fn
    return njit(cache=True, fastmath=True, nogil=True, error_model="numpy")(fn)


# A (sample, channel) plane runs flat over the padded width Wp, as ``_numba_depthwise``'s
# ``*_s1`` kernels: an output row of 7-32 values is too short for the vectoriser, a span of
# (OH - 1) Wp + OW is not (row by row, the forward took 0.20 -> 0.27 ms at 8 x 64 x 16^2).
@_jit
def _forward_planes(xpad, w, dh, dw, y, lo, hi):  # pragma: no cover
    # xpad: (N, C, Hp, Wp); w: (C, 3, 3); y: (N, C, OH, OW): planes [lo, hi) overwritten
    n, c, oh, ow = y.shape
    hp, wp = xpad.shape[2], xpad.shape[3]
    span = (oh - 1) * wp + ow
    xf = xpad.reshape(n * c, hp * wp)
    yf = y.reshape(n * c, oh * ow)
    buf = np.empty(span, dtype=y.dtype)
    o1, o2 = dw, 2 * dw
    o3, o6 = dh * wp, 2 * dh * wp
    o4, o5, o7, o8 = o3 + o1, o3 + o2, o6 + o1, o6 + o2
    for q in range(lo, hi):
        ch = q % c
        w0, w1, w2 = w[ch, 0, 0], w[ch, 0, 1], w[ch, 0, 2]
        w3, w4, w5 = w[ch, 1, 0], w[ch, 1, 1], w[ch, 1, 2]
        w6, w7, w8 = w[ch, 2, 0], w[ch, 2, 1], w[ch, 2, 2]
        # (slices: p >= 0 is known, so no wraparound code that would block the vectoriser)
        a0, a1, a2 = xf[q, 0:span], xf[q, o1 : o1 + span], xf[q, o2 : o2 + span]
        a3, a4, a5 = xf[q, o3 : o3 + span], xf[q, o4 : o4 + span], xf[q, o5 : o5 + span]
        a6, a7, a8 = xf[q, o6 : o6 + span], xf[q, o7 : o7 + span], xf[q, o8 : o8 + span]
        for p in range(span):
            buf[p] = (
                a0[p] * w0
                + a1[p] * w1
                + a2[p] * w2
                + a3[p] * w3
                + a4[p] * w4
                + a5[p] * w5
                + a6[p] * w6
                + a7[p] * w7
                + a8[p] * w8
            )
        yq = yf[q]
        for r in range(oh):
            for j in range(ow):
                yq[r * ow + j] = buf[r * wp + j]


@_jit
def _weight_grad_planes(xpad, g, dh, dw, gw, lo, hi):  # pragma: no cover
    # gw: (N, C, 3, 3) per-sample partial sums: planes [lo, hi) overwritten
    n, c, oh, ow = g.shape
    hp, wp = xpad.shape[2], xpad.shape[3]
    span = (oh - 1) * wp + ow
    xf = xpad.reshape(n * c, hp * wp)
    g2 = g.reshape(n * c, oh * ow)
    buf = np.zeros(span, dtype=g.dtype)  # g in the padded width: the gaps stay zero
    o1, o2 = dw, 2 * dw
    o3, o6 = dh * wp, 2 * dh * wp
    o4, o5, o7, o8 = o3 + o1, o3 + o2, o6 + o1, o6 + o2
    for q in range(lo, hi):
        i, ch = q // c, q % c
        gq = g2[q]
        for r in range(oh):
            for j in range(ow):
                buf[r * wp + j] = gq[r * ow + j]
        a0, a1, a2 = xf[q, 0:span], xf[q, o1 : o1 + span], xf[q, o2 : o2 + span]
        a3, a4, a5 = xf[q, o3 : o3 + span], xf[q, o4 : o4 + span], xf[q, o5 : o5 + span]
        a6, a7, a8 = xf[q, o6 : o6 + span], xf[q, o7 : o7 + span], xf[q, o8 : o8 + span]
        z = buf[0] * 0
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = z
        for p in range(span):
            v = buf[p]
            s0 += a0[p] * v
            s1 += a1[p] * v
            s2 += a2[p] * v
            s3 += a3[p] * v
            s4 += a4[p] * v
            s5 += a5[p] * v
            s6 += a6[p] * v
            s7 += a7[p] * v
            s8 += a8[p] * v
        gw[i, ch, 0, 0], gw[i, ch, 0, 1], gw[i, ch, 0, 2] = s0, s1, s2
        gw[i, ch, 1, 0], gw[i, ch, 1, 1], gw[i, ch, 1, 2] = s3, s4, s5
        gw[i, ch, 2, 0], gw[i, ch, 2, 1], gw[i, ch, 2, 2] = s6, s7, s8


@_jit
def forward_s1(xpad, w, dh, dw, y):  # pragma: no cover
    _forward_planes(xpad, w, dh, dw, y, 0, y.shape[0] * y.shape[1])


@_jit
def weight_grad_s1(xpad, g, dh, dw, gw):  # pragma: no cover
    _weight_grad_planes(xpad, g, dh, dw, gw, 0, g.shape[0] * g.shape[1])


# Two or more threads: the planes in blocks of PLANES on numba's threads (``conv_depthwise``)
PLANES = 8

if AVAILABLE:

    @njit(parallel=True, cache=True, fastmath=True, nogil=True, error_model="numpy")
    def forward_s1_par(xpad, w, dh, dw, y):  # pragma: no cover
        total = y.shape[0] * y.shape[1]
        for k in prange(-(-total // PLANES)):
            _forward_planes(xpad, w, dh, dw, y, k * PLANES, min(total, (k + 1) * PLANES))

    @njit(parallel=True, cache=True, fastmath=True, nogil=True, error_model="numpy")
    def weight_grad_s1_par(xpad, g, dh, dw, gw):  # pragma: no cover
        total = g.shape[0] * g.shape[1]
        for k in prange(-(-total // PLANES)):
            _weight_grad_planes(xpad, g, dh, dw, gw, k * PLANES, min(total, (k + 1) * PLANES))
