"""Compiled (numba) 2-D depthwise 3x3 convolution at stride 1 with "same" width padding (left =
right = the width dilation), read from the unpadded input: the padding, and the forward's bias
and the bias gradient, inside the kernels (``conv_depthwise.FUSED``).

``_numba_depthwise_k3``'s kernels read a zero-padded copy of the whole input, made first by the
caller, and run each plane flat over the padded width Wp, moving the OW valid columns of every
row in and out of that width with short row loops (8 x 64 x 16^2 float32, 1 thread: the pad
0.06 ms and a bias pass 0.02 ms around a 0.12 ms kernel, of which the row moves are about half:
LLVM vectorises a 16-element row loop for longer trips and runs it scalar).

Here a (sample, channel) plane stays W wide. It is copied (one contiguous run) into three
frames that have the top and bottom padding as zero rows and a guard of ``dw`` zeros at either
end: frame 1 as it is, frame 0 with its last ``dw`` columns zeroed, frame 2 with its first
``dw`` zeroed. Output p = r * W + j of tap (a, b) reads flat index ``p + a dh W + b dw`` of
frame b: where a left tap (b = 0) runs off a row's start it reads the previous row's last
columns, zero in frame 0, which is the left padding; the right taps likewise. So every tap is
one multiply-add over OH * W contiguous outputs that land straight in y (no gap columns, no row
moves), and the weight gradient reads g's plane as it is.

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


@_jit
def _frames(h, w, top, bottom, dw, dtype_of):  # pragma: no cover
    # three zeroed frames of dw + (top + h + bottom) * w + dw elements
    return np.zeros((3, dw + (top + h + bottom) * w + dw), dtype=dtype_of.dtype)


@_jit
def _fill(fr, xq, h, w, top, dw):  # pragma: no cover
    # plane xq (h * w) into the frames' interior; frame 0 loses its last dw columns, frame 2 its
    # first dw (the rest of the frames, zero, is never written)
    base = dw + top * w
    f0, f1, f2 = fr[0, base : base + h * w], fr[1, base : base + h * w], fr[2, base : base + h * w]
    for p in range(h * w):
        v = xq[p]
        f0[p] = v
        f1[p] = v
        f2[p] = v
    for r in range(h):
        for j in range(dw):
            f0[r * w + w - dw + j] = 0
            f2[r * w + j] = 0


@_jit
def _forward_planes(x, w, b, top, bottom, dh, dw, y, lo, hi):  # pragma: no cover
    # x: (N, C, H, W); w: (C, 3, 3); b: (C,) or empty (no bias); y: (N, C, OH, W) with
    # OH = H + top + bottom - 2 dh: planes [lo, hi) overwritten
    n, c, oh, ow = y.shape
    h = x.shape[2]
    span = oh * ow
    xf = x.reshape(n * c, h * ow)
    yf = y.reshape(n * c, span)
    fr = _frames(h, ow, top, bottom, dw, y)
    r1, r2 = dh * ow, 2 * dh * ow
    a0, a1, a2 = fr[0, 0:span], fr[1, dw : dw + span], fr[2, 2 * dw : 2 * dw + span]
    a3, a4 = fr[0, r1 : r1 + span], fr[1, r1 + dw : r1 + dw + span]
    a5 = fr[2, r1 + 2 * dw : r1 + 2 * dw + span]
    a6, a7 = fr[0, r2 : r2 + span], fr[1, r2 + dw : r2 + dw + span]
    a8 = fr[2, r2 + 2 * dw : r2 + 2 * dw + span]
    nb = b.shape[0]
    for q in range(lo, hi):
        ch = q % c
        _fill(fr, xf[q], h, ow, top, dw)
        w0, w1, w2 = w[ch, 0, 0], w[ch, 0, 1], w[ch, 0, 2]
        w3, w4, w5 = w[ch, 1, 0], w[ch, 1, 1], w[ch, 1, 2]
        w6, w7, w8 = w[ch, 2, 0], w[ch, 2, 1], w[ch, 2, 2]
        bv = b[ch] if nb else w0 * 0
        yq = yf[q]
        for p in range(span):
            yq[p] = (
                a0[p] * w0
                + a1[p] * w1
                + a2[p] * w2
                + a3[p] * w3
                + a4[p] * w4
                + a5[p] * w5
                + a6[p] * w6
                + a7[p] * w7
                + a8[p] * w8
            ) + bv


@_jit
def _weight_grad_planes(x, g, top, bottom, dh, dw, gw, gb, lo, hi):  # pragma: no cover
    # gw: (N, C, 3, 3) and gb: (N, C) per-sample partial sums: planes [lo, hi) overwritten
    n, c, oh, ow = g.shape
    h = x.shape[2]
    span = oh * ow
    xf = x.reshape(n * c, h * ow)
    g2 = g.reshape(n * c, span)
    fr = _frames(h, ow, top, bottom, dw, g)
    r1, r2 = dh * ow, 2 * dh * ow
    a0, a1, a2 = fr[0, 0:span], fr[1, dw : dw + span], fr[2, 2 * dw : 2 * dw + span]
    a3, a4 = fr[0, r1 : r1 + span], fr[1, r1 + dw : r1 + dw + span]
    a5 = fr[2, r1 + 2 * dw : r1 + 2 * dw + span]
    a6, a7 = fr[0, r2 : r2 + span], fr[1, r2 + dw : r2 + dw + span]
    a8 = fr[2, r2 + 2 * dw : r2 + 2 * dw + span]
    for q in range(lo, hi):
        i, ch = q // c, q % c
        _fill(fr, xf[q], h, ow, top, dw)
        gq = g2[q]
        z = gq[0] * 0
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = s8 = sb = z
        for p in range(span):
            v = gq[p]
            s0 += a0[p] * v
            s1 += a1[p] * v
            s2 += a2[p] * v
            s3 += a3[p] * v
            s4 += a4[p] * v
            s5 += a5[p] * v
            s6 += a6[p] * v
            s7 += a7[p] * v
            s8 += a8[p] * v
            sb += v
        gw[i, ch, 0, 0], gw[i, ch, 0, 1], gw[i, ch, 0, 2] = s0, s1, s2
        gw[i, ch, 1, 0], gw[i, ch, 1, 1], gw[i, ch, 1, 2] = s3, s4, s5
        gw[i, ch, 2, 0], gw[i, ch, 2, 1], gw[i, ch, 2, 2] = s6, s7, s8
        gb[i, ch] = sb


@_jit
def forward(x, w, b, top, bottom, dh, dw, y):  # pragma: no cover
    _forward_planes(x, w, b, top, bottom, dh, dw, y, 0, y.shape[0] * y.shape[1])


@_jit
def weight_grad(x, g, top, bottom, dh, dw, gw, gb):  # pragma: no cover
    _weight_grad_planes(x, g, top, bottom, dh, dw, gw, gb, 0, g.shape[0] * g.shape[1])


# Two or more threads: the planes in blocks of PLANES on numba's threads (``conv_depthwise``)
PLANES = 16

if AVAILABLE:

    @njit(parallel=True, cache=True, fastmath=True, nogil=True, error_model="numpy")
    def forward_par(x, w, b, top, bottom, dh, dw, y):  # pragma: no cover
        total = y.shape[0] * y.shape[1]
        for k in prange(-(-total // PLANES)):
            lo, hi = k * PLANES, min(total, (k + 1) * PLANES)
            _forward_planes(x, w, b, top, bottom, dh, dw, y, lo, hi)

    @njit(parallel=True, cache=True, fastmath=True, nogil=True, error_model="numpy")
    def weight_grad_par(x, g, top, bottom, dh, dw, gw, gb):  # pragma: no cover
        total = g.shape[0] * g.shape[1]
        for k in prange(-(-total // PLANES)):
            lo, hi = k * PLANES, min(total, (k + 1) * PLANES)
            _weight_grad_planes(x, g, top, bottom, dh, dw, gw, gb, lo, hi)
