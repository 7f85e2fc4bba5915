"""Compiled (numba) direct convolution, one sample at a time: the padded input's layout, the
micro-kernels and the crop of the wide rows in one pass over each sample (``conv_direct_fused``).

``_numba_conv_direct.forward`` needs the zero-padded input of the whole batch laid out first
and its wide-row output cropped afterwards, two NumPy passes over memory that stay on one
thread at two threads. Here a sample's layout is written just before its micro-kernels read
it and its wide rows are cropped while they are still in cache; the parallel variant runs
the samples on numba's threads, copies included.

- ``forward(x, runs, zruns, xf, xcl, wk, offs, plane_step, qpad, yw, oruns, bias, y)``: x
  (N, C, L) the input flat per channel; ``runs`` (R, 4) the layout of one channel as runs of
  (source offset, destination offset, count, source step), the rest of the channel's ``xf``
  row (N, C, P) zeroed by the runs ``zruns`` (Z, 2) of (start, stop); the micro-kernels
  (``_numba_conv_direct._fwd_micro``) into the wide rows of one sample, ``yw`` (B, O, S): a
  scratch of B samples' wide rows, reused (B = 1 serially; the parallel variant runs the
  samples in B chunks, one buffer each), so the whole batch's wide rows are never held;
  ``oruns`` (R2, 3) the crop as runs of (source offset, destination offset, count) into y
  (N, O, Lout), plus ``bias`` (O,). Where ``xcl`` is not empty, the sample's padded input
  is also written channels-last into it (N, P, C), for the weight gradient's kernel.
- ``widen(g, oruns, zruns, gw)``: g's rows (N * O, Lout) into the wide rows gw (N * O, S),
  the inverse of the crop's runs, zeros at ``zruns``.

The blocking constants (OB, VEC_BYTES) live in ``conv_direct``. Arrays are C-contiguous,
float32 or float64, of one dtype (``runs`` / ``oruns`` / ``offs`` int64).
"""

from __future__ import annotations

from ._numba_conv_direct import AVAILABLE
from .conv_direct import OB, VEC_BYTES

if AVAILABLE:
    from numba import njit, prange

    from ._numba_conv_direct import _fwd_micro

    @njit(cache=True, nogil=True, error_model="numpy")
    def _sample(
        n, x, runs, zruns, xf, xcl, wk, offs, plane_step, qpad, yw, oruns, bias, y
    ):  # pragma: no cover
        # yw (O, S): this sample's wide rows (a scratch reused from sample to sample)
        c, p = xf.shape[1], xf.shape[2]
        o, s = yw.shape[0], yw.shape[1]
        nob, t = wk.shape[0], wk.shape[2]
        npl = s // qpad
        jb = VEC_BYTES // xf.itemsize
        # the layout of this sample's padded input: zeros, then the runs of each channel
        for ch in range(c):
            row = xf[n, ch]
            src = x[n, ch]
            for r in range(zruns.shape[0]):
                for i in range(zruns[r, 0], zruns[r, 1]):
                    row[i] = 0
            for r in range(runs.shape[0]):
                so, do, cnt, st = runs[r, 0], runs[r, 1], runs[r, 2], runs[r, 3]
                if st == 1:  # (a loop: a slice assignment may copy through a temporary)
                    for i in range(cnt):
                        row[do + i] = src[so + i]
                else:
                    for i in range(cnt):
                        row[do + i] = src[so + i * st]
        if xcl.shape[0]:  # the channels-last copy for the weight gradient, from cache
            for i in range(p):
                for ch in range(c):
                    xcl[n, i, ch] = xf[n, ch, i]
        xflat, wflat, yflat = xf.reshape(-1), wk.reshape(-1), yw.reshape(-1)
        for ob in range(nob):
            for pl in range(npl):
                for j0 in range(0, qpad, jb):
                    _fwd_micro(
                        xflat,
                        n * c * p + pl * plane_step + j0,
                        p,
                        wflat,
                        ob * c * t * OB,
                        c,
                        offs,
                        yflat,
                        ob * OB * s + pl * qpad + j0,
                        s,
                    )
        # the crop of the wide rows (and the bias), while they are in cache
        for oc in range(o):
            src = yw[oc]
            dst = y[n, oc]
            bv = bias[oc]
            for r in range(oruns.shape[0]):
                so, do, cnt = oruns[r, 0], oruns[r, 1], oruns[r, 2]
                for i in range(cnt):
                    dst[do + i] = src[so + i] + bv

    @njit(cache=True, nogil=True, error_model="numpy")
    def forward(
        x, runs, zruns, xf, xcl, wk, offs, plane_step, qpad, yw, oruns, bias, y
    ):  # pragma: no cover
        buf = yw[0]
        for n in range(x.shape[0]):
            _sample(n, x, runs, zruns, xf, xcl, wk, offs, plane_step, qpad, buf, oruns, bias, y)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def forward_par(
        x, runs, zruns, xf, xcl, wk, offs, plane_step, qpad, yw, oruns, bias, y
    ):  # pragma: no cover
        # the samples in yw.shape[0] chunks, each with its own scratch of wide rows
        nb, n_ = yw.shape[0], x.shape[0]
        for k in prange(nb):
            buf = yw[k]
            for n in range(k * n_ // nb, (k + 1) * n_ // nb):
                _sample(n, x, runs, zruns, xf, xcl, wk, offs, plane_step, qpad, buf, oruns, bias, y)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _widen_row(i, g, oruns, zruns, gw):  # pragma: no cover
        src, dst = g[i], gw[i]
        for r in range(zruns.shape[0]):
            for j in range(zruns[r, 0], zruns[r, 1]):
                dst[j] = 0
        for r in range(oruns.shape[0]):
            so, do, cnt = oruns[r, 0], oruns[r, 1], oruns[r, 2]
            for j in range(cnt):
                dst[so + j] = src[do + j]

    @njit(cache=True, nogil=True, error_model="numpy")
    def widen(g, oruns, zruns, gw):  # pragma: no cover
        for i in range(g.shape[0]):
            _widen_row(i, g, oruns, zruns, gw)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def widen_par(g, oruns, zruns, gw):  # pragma: no cover
        for i in prange(g.shape[0]):
            _widen_row(i, g, oruns, zruns, gw)
