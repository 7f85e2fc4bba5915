"""Compiled (numba) strided input gradient of the direct convolution, one sample at a time
(``conv_direct_fused.fused_input_grad``).

``conv_direct.direct_input_grad`` pads g with NumPy, runs the micro-kernels once per stride
phase of the input and interleaves each phase's cropped result into dx with a NumPy copy:
at two threads the copies stay on one thread and the per-phase kernel calls are too small
for the parallel variants. Here a sample's padded g is written just before the phases'
micro-kernels read it, and each phase's wide rows are scattered into dx while in cache; the
parallel variant runs the samples on numba's threads.

- ``input_grad(g, gruns, gzruns, gf, wt, woffs, offs, ostarts, plane_step, qpad, yw, druns,
  dstarts, zero, dx)``: g (N, O, Lout) flat per channel, laid out into ``gf`` (N, O, P) by
  the runs ``gruns`` (R, 4) of (source offset, destination offset, count, source step) and
  zeros at ``gzruns`` (Z, 2); per phase ``k`` the transposed weight block (C / 8, O, T_k, 8)
  starts at ``woffs[k]`` of the flat ``wt`` and its tap offsets are
  ``offs[ostarts[k]:ostarts[k + 1]]``; the micro-kernels write the wide rows ``yw`` (N, C,
  S), which the runs ``druns[dstarts[k]:dstarts[k + 1]]`` (source offset, destination
  offset, count, destination step) scatter into dx (N, C, L); ``zero``: dx is zeroed first
  (where some input positions get no tap).
"""

from __future__ import annotations

from ._numba_conv_direct import AVAILABLE
from .conv_direct import OB, VEC_BYTES

if AVAILABLE:
    from numba import njit, prange

    from ._numba_conv_direct import _fwd_micro

    @njit(cache=True, nogil=True, error_model="numpy")
    def _sample(
        n,
        g,
        gruns,
        gzruns,
        gf,
        wt,
        woffs,
        offs,
        ostarts,
        plane_step,
        qpad,
        yw,
        druns,
        dstarts,
        zero,
        dx,
    ):  # pragma: no cover
        o, p = gf.shape[1], gf.shape[2]
        c, s = yw.shape[1], yw.shape[2]
        npl = s // qpad
        jb = VEC_BYTES // gf.itemsize
        for ch in range(o):  # this sample's padded g
            row = gf[n, ch]
            src = g[n, ch]
            for r in range(gzruns.shape[0]):
                for i in range(gzruns[r, 0], gzruns[r, 1]):
                    row[i] = 0
            for r in range(gruns.shape[0]):
                so, do, cnt = gruns[r, 0], gruns[r, 1], gruns[r, 2]
                for i in range(cnt):
                    row[do + i] = src[so + i]
        if zero:
            for ch in range(c):
                d = dx[n, ch]
                for i in range(d.shape[0]):
                    d[i] = 0
        gflat, yflat = gf.reshape(-1), yw.reshape(-1)
        for k in range(woffs.shape[0]):
            po = offs[ostarts[k] : ostarts[k + 1]]
            t = po.shape[0]
            for cb in range(c // OB):
                for pl in range(npl):
                    for j0 in range(0, qpad, jb):
                        _fwd_micro(
                            gflat,
                            n * o * p + pl * plane_step + j0,
                            p,
                            wt,
                            woffs[k] + cb * o * t * OB,
                            o,
                            po,
                            yflat,
                            (n * c + cb * OB) * s + pl * qpad + j0,
                            s,
                        )
            for ch in range(c):  # this phase's positions of dx, from cache
                src = yw[n, ch]
                dst = dx[n, ch]
                for r in range(dstarts[k], dstarts[k + 1]):
                    so, do, cnt, st = druns[r, 0], druns[r, 1], druns[r, 2], druns[r, 3]
                    for i in range(cnt):
                        dst[do + i * st] = src[so + i]

    @njit(cache=True, nogil=True, error_model="numpy")
    def input_grad(
        g,
        gruns,
        gzruns,
        gf,
        wt,
        woffs,
        offs,
        ostarts,
        plane_step,
        qpad,
        yw,
        druns,
        dstarts,
        zero,
        dx,
    ):  # pragma: no cover
        for n in range(g.shape[0]):
            _sample(
                n,
                g,
                gruns,
                gzruns,
                gf,
                wt,
                woffs,
                offs,
                ostarts,
                plane_step,
                qpad,
                yw,
                druns,
                dstarts,
                zero,
                dx,
            )

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def input_grad_par(
        g,
        gruns,
        gzruns,
        gf,
        wt,
        woffs,
        offs,
        ostarts,
        plane_step,
        qpad,
        yw,
        druns,
        dstarts,
        zero,
        dx,
    ):  # pragma: no cover
        for n in prange(g.shape[0]):
            _sample(
                n,
                g,
                gruns,
                gzruns,
                gf,
                wt,
                woffs,
                offs,
                ostarts,
                plane_step,
                qpad,
                yw,
                druns,
                dstarts,
                zero,
                dx,
            )
