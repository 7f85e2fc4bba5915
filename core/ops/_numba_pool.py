"""Compiled (numba) 2-D max pooling: the forward (values and the kernel offset of each
window's maximum) and the backward scatter in one pass over the output each, instead of one
strided NumPy pass per kernel offset with ~5 array operations each (compare, select the
offset, maximum). Imported lazily by ``pooling`` and used when numba is installed (the ``fast``
extra) and ``EMBER_NUMBA`` is not ``0``; without numba the module imports with ``AVAILABLE``
False and pooling keeps its NumPy loops.

The comparison is PyTorch's strict ``>``, so ties keep the first element in (row, column) order;
padding is never read (each window starts at its first tap inside the input). Inputs holding a
NaN stay on the NumPy path, which reproduces PyTorch's NaN positions: a NaN test per tap
tripled the kernel's time.
"""

from __future__ import annotations

try:
    from numba import njit
except ImportError:  # numba is optional
    njit = None

AVAILABLE = njit is not None


def _jit(fn):
    return njit(cache=True, nogil=True)(fn) if AVAILABLE else fn


@_jit
def max_pool2d_forward(x, kh, kw, sh, sw, ph, pw, dh, dw, out, which):  # pragma: no cover
    # x: (P, H, W) planes without NaN (the caller checks); out, which: (P, OH, OW); which
    # holds the offset i * kw + j. Each window starts at its first tap inside the input and the
    # taps' compares are selects, not branches (measured on 1024x56x56 k3 s2: 16 ms; a NaN test
    # per tap made it 48 ms, a loop over taps with the outputs of a row inner 48 ms)
    p_, h_, w_ = x.shape
    _, oh_, ow_ = out.shape
    for p in range(p_):
        for oh in range(oh_):
            h0 = oh * sh - ph
            i0 = 0
            while h0 + i0 * dh < 0:
                i0 += 1
            i1 = kh
            while h0 + (i1 - 1) * dh >= h_:
                i1 -= 1
            for ow in range(ow_):
                w0 = ow * sw - pw
                j0 = 0
                while w0 + j0 * dw < 0:
                    j0 += 1
                j1 = kw
                while w0 + (j1 - 1) * dw >= w_:
                    j1 -= 1
                best = x[p, h0 + i0 * dh, w0 + j0 * dw]
                code = i0 * kw + j0
                for i in range(i0, i1):
                    h = h0 + i * dh
                    for j in range(j0, j1):
                        v = x[p, h, w0 + j * dw]
                        gt = v > best
                        best = v if gt else best
                        code = i * kw + j if gt else code
                out[p, oh, ow] = best
                which[p, oh, ow] = code


@_jit
def max_pool2d_scatter(g, which, kw, sh, sw, ph, pw, dh, dw, out):  # pragma: no cover
    # out: zeroed (P, H, W); adds each g to the input position its window's maximum came from
    p_, h_, w_ = out.shape
    _, oh_, ow_ = g.shape
    for p in range(p_):
        for oh in range(oh_):
            for ow in range(ow_):
                k = which[p, oh, ow]
                h = oh * sh - ph + (k // kw) * dh
                w = ow * sw - pw + (k % kw) * dw
                if 0 <= h < h_ and 0 <= w < w_:
                    out[p, h, w] += g[p, oh, ow]


# ---- 2x2 windows that tile the input (kernel 2, stride 2, no padding, even sizes) -----------
# The most common pooling (the cnn's first pool): straight-line code per window, no bounds
# loops, so each plane is one pass at memory speed, and the planes split over the threads.
# The NumPy tree of pairwise maxima it replaces is serial (16x32x64x64 forward 2.4-2.7 ms at 1
# and 2 threads; see docs/kernels.md, session 24).
@_jit
def max_pool2x2_forward(x, out, which):  # pragma: no cover
    # x: (P, 2 OH, 2 OW) planes without NaN; out, which (uint8): (P, OH, OW). Strict ``>`` in
    # (row, column) order: ties keep the first element, as max_pool2d_forward and PyTorch
    p_, oh_, ow_ = out.shape
    for p in range(p_):
        for oh in range(oh_):
            r0 = 2 * oh
            r1 = r0 + 1
            for ow in range(ow_):
                c0 = 2 * ow
                c1 = c0 + 1
                best = x[p, r0, c0]
                code = 0
                v = x[p, r0, c1]
                gt = v > best
                best = v if gt else best
                code = 1 if gt else code
                v = x[p, r1, c0]
                gt = v > best
                best = v if gt else best
                code = 2 if gt else code
                v = x[p, r1, c1]
                gt = v > best
                best = v if gt else best
                code = 3 if gt else code
                out[p, oh, ow] = best
                which[p, oh, ow] = code


@_jit
def max_pool2x2_scatter(g, which, zero, out):  # pragma: no cover
    # out: (P, 2 OH, 2 OW), every element written (g at the window's maximum, else zero[0]):
    # no zero-filled buffer, no read-modify-write
    p_, oh_, ow_ = g.shape
    z = zero[0]
    for p in range(p_):
        for oh in range(oh_):
            r0 = 2 * oh
            r1 = r0 + 1
            for ow in range(ow_):
                c0 = 2 * ow
                c1 = c0 + 1
                v = g[p, oh, ow]
                k = which[p, oh, ow]
                out[p, r0, c0] = v if k == 0 else z
                out[p, r0, c1] = v if k == 1 else z
                out[p, r1, c0] = v if k == 2 else z
                out[p, r1, c1] = v if k == 3 else z


@_jit
def avg_pool2x2_forward(x, div, out):  # pragma: no cover
    # the sums in the NumPy tile sum's order, (a + b) + (c + d), then one division by div[0]
    # (the divisor in x's dtype): bitwise NumPy's ``_tile_sum`` and ``y /= divisor``
    p_, oh_, ow_ = out.shape
    d = div[0]
    for p in range(p_):
        for oh in range(oh_):
            r0 = 2 * oh
            r1 = r0 + 1
            for ow in range(ow_):
                c0 = 2 * ow
                c1 = c0 + 1
                top = x[p, r0, c0] + x[p, r0, c1]
                out[p, oh, ow] = (top + (x[p, r1, c0] + x[p, r1, c1])) / d


@_jit
def avg_pool2x2_backward(g, div, out):  # pragma: no cover
    # each window's four positions get g / div[0] (NumPy's ``grad / divisor``, then repeat)
    p_, oh_, ow_ = g.shape
    d = div[0]
    for p in range(p_):
        for oh in range(oh_):
            r0 = 2 * oh
            r1 = r0 + 1
            for ow in range(ow_):
                c0 = 2 * ow
                c1 = c0 + 1
                v = g[p, oh, ow] / d
                out[p, r0, c0] = v
                out[p, r0, c1] = v
                out[p, r1, c0] = v
                out[p, r1, c1] = v
