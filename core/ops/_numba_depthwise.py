"""Compiled (numba) 2-D depthwise convolution: forward, input gradient and weight gradient as
direct loops over kernel taps on the zero-padded input, any stride and dilation.

Per (sample, channel) and output row, each tap is one multiply-add over the output row (a
contiguous run at stride 1, which LLVM vectorises) against the padded input row it sees; the
output row stays in L1 while the taps accumulate into it. The input gradient scatters the same
way into a padded gradient, the weight gradient reduces each tap over the rows. NumPy's path
(``conv_depthwise``) makes a column copy per tap and batched matrix-vector products instead.

Arrays are C-contiguous and of one float dtype. Imported lazily by ``conv_depthwise``;
``AVAILABLE`` is False without numba.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # numba is optional: conv_depthwise keeps its NumPy kernels
    njit = None

AVAILABLE = njit is not None


def _jit(fn):
    if not AVAILABLE:
        return fn
    return njit(cache=True, fastmath=True, nogil=True, error_model="numpy")(fn)


@_jit
def forward(xpad, w, sh, sw, dh, dw, y):  # pragma: no cover
    # xpad: (N, C, Hp, Wp); w: (C, KH, KW); y: (N, C, OH, OW), overwritten
    n, c, oh, ow = y.shape
    kh, kw = w.shape[1], w.shape[2]
    for i in range(n):
        for ch in range(c):
            for r in range(oh):
                yr = y[i, ch, r]  # row slices: indices known >= 0, no wraparound code
                yr[:] = 0
                for a in range(kh):
                    for b in range(kw):
                        wv = w[ch, a, b]
                        xr = xpad[i, ch, r * sh + a * dh, b * dw :]
                        for j in range(ow):
                            yr[j] += xr[j * sw] * wv


@_jit
def input_grad(g, w, sh, sw, dh, dw, gxpad):  # pragma: no cover
    # g: (N, C, OH, OW); gxpad: (N, C, Hp, Wp), zeroed by the caller; the caller crops it
    n, c, oh, ow = g.shape
    kh, kw = w.shape[1], w.shape[2]
    for i in range(n):
        for ch in range(c):
            for r in range(oh):
                gr = g[i, ch, r]
                for a in range(kh):
                    for b in range(kw):
                        wv = w[ch, a, b]
                        dr = gxpad[i, ch, r * sh + a * dh, b * dw :]
                        for j in range(ow):
                            dr[j * sw] += gr[j] * wv


@_jit
def weight_grad(xpad, g, sh, sw, dh, dw, gw):  # pragma: no cover
    # gw: (N, C, KH, KW) per-sample partial sums (the caller sums over N), overwritten
    n, c, oh, ow = g.shape
    kh, kw = gw.shape[2], gw.shape[3]
    for i in range(n):
        for ch in range(c):
            for a in range(kh):
                for b in range(kw):
                    gw[i, ch, a, b] = 0
            for r in range(oh):
                gr = g[i, ch, r]
                for a in range(kh):
                    for b in range(kw):
                        xr = xpad[i, ch, r * sh + a * dh, b * dw :]
                        s = gw[i, ch, a, b] * 0
                        for j in range(ow):
                            s += xr[j * sw] * gr[j]
                        gw[i, ch, a, b] += s


# ---- stride 1: taps as shifts of the flattened padded plane --------------------------------
# At stride 1, output (r, j) of tap (a, b) reads padded input (r + a dh, j + b dw): in a plane
# flattened with the padded width Wp that is one shift, so each tap is a multiply-add over a
# run of (OH - 1) Wp + OW elements (the Wp - OW gap columns are computed and dropped), long
# enough to vectorise where an output row of 7-32 elements is not (8x64x16x16 k3: forward 1.25
# -> 0.40 ms, one core).
# Rows move between the (OH, OW) planes and the Wp-wide runs by explicit loops over one flat
# plane: a slice assignment per output row cost more than the taps themselves (8x64x16x16 k3
# forward kernel 0.53 -> 0.26 ms, 1 thread).
@_jit
def forward_s1(xpad, w, dh, dw, y):  # pragma: no cover
    n, c, oh, ow = y.shape
    hp, wp = xpad.shape[2], xpad.shape[3]
    kh, kw = w.shape[1], w.shape[2]
    span = (oh - 1) * wp + ow
    xf = xpad.reshape(n * c, hp * wp)
    yf = y.reshape(n * c, oh * ow)
    buf = np.empty(span, dtype=y.dtype)
    for q in range(n * c):
        ch = q % c
        for p in range(span):
            buf[p] = 0
        for a in range(kh):
            for b in range(kw):
                wv = w[ch, a, b]
                off = a * dh * wp + b * dw
                src = xf[q, off : off + span]  # (a slice: p >= 0 is known, no wraparound)
                for p in range(span):
                    buf[p] += src[p] * wv
        yq = yf[q]
        for r in range(oh):
            for j in range(ow):
                yq[r * ow + j] = buf[r * wp + j]


@_jit
def _spread(gq, oh, ow, wp, buf):  # pragma: no cover
    # one (OH * OW) plane of g into the padded width, zero gaps
    for p in range(buf.shape[0]):
        buf[p] = 0
    for r in range(oh):
        for j in range(ow):
            buf[r * wp + j] = gq[r * ow + j]


@_jit
def input_grad_s1(g, w, dh, dw, gxpad):  # pragma: no cover
    # gxpad zeroed by the caller (it crops it)
    n, c, oh, ow = g.shape
    hp, wp = gxpad.shape[2], gxpad.shape[3]
    kh, kw = w.shape[1], w.shape[2]
    span = (oh - 1) * wp + ow
    gf = gxpad.reshape(n * c, hp * wp)
    g2 = g.reshape(n * c, oh * ow)
    buf = np.empty(span, dtype=g.dtype)
    for q in range(n * c):
        ch = q % c
        _spread(g2[q], oh, ow, wp, buf)
        for a in range(kh):
            for b in range(kw):
                wv = w[ch, a, b]
                off = a * dh * wp + b * dw
                dst = gf[q, off : off + span]
                for p in range(span):
                    dst[p] += buf[p] * wv


@_jit
def weight_grad_s1(xpad, g, dh, dw, gw):  # pragma: no cover
    # gw: (N, C, KH, KW) per-sample partial sums, overwritten
    n, c, oh, ow = g.shape
    hp, wp = xpad.shape[2], xpad.shape[3]
    kh, kw = gw.shape[2], gw.shape[3]
    span = (oh - 1) * wp + ow
    xf = xpad.reshape(n * c, hp * wp)
    g2 = g.reshape(n * c, oh * ow)
    buf = np.empty(span, dtype=g.dtype)
    for q in range(n * c):
        i, ch = q // c, q % c
        _spread(g2[q], oh, ow, wp, buf)
        for a in range(kh):
            for b in range(kw):
                off = a * dh * wp + b * dw
                src = xf[q, off : off + span]
                s = buf[0] * 0
                for p in range(span):
                    s += src[p] * buf[p]
                gw[i, ch, a, b] = s
