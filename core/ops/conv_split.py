"""Convolutions at two or more threads: the whole batch as at one thread, or cut into parts.

With ``set_num_threads(2)`` the GEMMs of a convolution from ``mkl_gemm.MULTI_FLOPS``
multiply-adds went to OpenBLAS's two threads, the smaller ones to MKL's sequential path, and
the blocked path (``conv_blocked``) was off: the unblocked paths' large column matrices cost
more than the second thread gave back (same process, quiet machine, ms a step, 1 thread ->
2 threads: 16->16 on 8 x 32^2 2.7 -> 3.1, 32->32 k5 16.8 -> 28.7, 3-D 16->32 on 2 x 16^3
15.1 -> 32.2). Here, at two or more threads with MKL on, a convolution's batch is cut into
``MAX_PARTS`` consecutive parts, and each part runs the one-thread algorithm of its shape
(blocked, channels-last, im2col, 1x1) with ``num_threads() == 1`` (``threads.as_one_thread``);
with more than one part they run side by side in ember's worker pool (``threads.run_parts``:
MKL's calls, NumPy's copies and the compiled kernels release the GIL). The forward and input
gradient write each part's samples into one output; the weight gradient sums the parts' (in
part order, so a run is reproducible; the order differs from one thread's, so the results agree
to rounding, not bitwise). The forward's columns are kept per part (``SplitCols``).

Without MKL (AMD, by default) a convolution the direct kernels take (``conv_direct``,
``conv_direct_cl``; a weight up to ``MAX_WEIGHT_BYTES``) still runs in one part: before session
23 it fell back to the GEMM paths on OpenBLAS's threads at two threads and lost to one thread
(3-D 16->32 on 2 x 16^3: 7.8 ms at 1 thread, 20.4 at 2, 5.1 now). Under
``MIN_THREADED_MACS`` the part runs exactly as at one thread (docs/kernels.md, session 23).

Two parts only for deep GEMMs with many output channels (``MIN_PART_ROWS`` column rows,
``MIN_PART_OUT`` output channels) and enough work (``MIN_PART_MACS`` a part); otherwise one
part, the whole batch on the calling thread. On this machine's two vCPUs the parts' gathers
and copies do not scale (two numba copy loops side by side moved no more bytes than one),
while two MKL GEMMs side by side ran at full speed each: where the GEMMs dominate, two parts
win, elsewhere they lose. Measured (quiet machine, same process, wall time, ms a step, 1
thread -> 2 threads in two parts; runs differ by ~10-20%): 64->64 on 8 x 16^2 10.2 -> 6.8,
128->128 on 8 x 8^2 8.1 -> 6.1, 3-D 16->32 on 2 x 16^3 15.5 -> 12.5, 32->32 k5 on 8 x 32^2
28.0 -> 20.4 (and 20.0 -> 21.8 in another run); but 16->16 on 8 x 32^2 4.1 -> 4.9 (144 rows),
3->64 k7 s2 on 2 x 224^2 26.8 -> 32.0 (147 rows), 1-D 64->64 k3 2.0 -> 2.2 (192 rows).
Over 6-7 runs the medians of two parts / one thread were 0.75-0.84 on the four winners, with
runs from 0.63 to 1.31; at the quietest moments 0.93-1.00 (docs/kernels.md).
Timing two threads on this machine needs a process without OpenBLAS threads spinning beside
it (they spin for a while after a threaded call): an A/B that ran OpenBLAS-threaded variants
in the same process showed the parts losing everywhere.

Only float32 and float64, where MKL runs the products: OpenBLAS called from two threads at
once, each with its own pool of two, oversubscribes the cores. A part must hold
``MIN_PART_MACS`` multiply-adds. A weight larger
than ``MAX_WEIGHT_BYTES`` keeps the multi-threaded paths: its products are large enough for
OpenBLAS's threads (512->512 on 2 x 7^2: 18.5 ms at 1 thread, 12.4 at 2; 256->256 on 4 x
7^2, 2.4 MB of weight: 7.7 ms at 2 threads that way, 8.5-9.4 in one part), and the parts'
weight gradients would be summed at one pass over the weight each.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import mkl_gemm as _mkl
from ..backend.threads import as_one_thread, num_threads, run_parts
from . import conv_direct, conv_direct_cl
from .conv_direct import with_kernel_threads

# multiply-adds a part, at least: 1-D 128->128 k5 on 8 x 64 (21 M a part) went 3.8 -> 4.8 ms
# in two parts in one run, 5.2 -> 4.1 and 3.9 -> 3.6 in others; 64->64 on 8 x 16^2 (38 M) won
# in every run
MIN_PART_MACS = 1 << 25
MAX_WEIGHT_BYTES = 1 << 20
ENABLED = True  # False: the paths as before (A/B)
MAX_PARTS = 2
# more than one part only for a deep GEMM (C/g * prod(k) column rows) with many output channels
MIN_PART_ROWS, MIN_PART_OUT = 256, 32
# A direct convolution stays one part with its kernels' parallel variants whether or not MKL
# is on (False: only with MKL on, as before session 23; A/B)
DIRECT_WITHOUT_MKL = True
# A convolution in one part (``_one_part``) lets its kernels use several threads from this
# many multiply-adds (forward, whole batch); smaller ones run as at one thread: numba's
# parallel variants lost there (session 23, see docs/kernels.md). 1 << 23 since session 25
# (with ``conv_direct.MIN_KERNEL_MACS``): timed only while no other job held the second core,
# 2 threads, ms a step, 16->32 s2 on 8 x 32^2 (9.4 M) 1.11 -> 0.86, 1-D 64->64 k3 on 8 x 128
# (12.6 M) 1.16 -> 0.87; with the second core taken they lose ~10% (session 24). 1 << 21
# since session 26 (``conv_direct.MIN_KERNEL_MACS``'s figures)
MIN_THREADED_MACS = 1 << 21


def _one_part(macs: int, fn, *args):
    """``fn(*args)`` as one part on the calling thread: ``num_threads() == 1`` for its
    choices, while the direct kernels' calls may still use this many threads (their copies
    stay on one; ``conv_direct.with_kernel_threads``) if the convolution has ``macs >=
    MIN_THREADED_MACS`` multiply-adds; a smaller one runs exactly as at one thread."""
    nk = num_threads() if macs >= MIN_THREADED_MACS else 1
    return as_one_thread(with_kernel_threads, nk, fn, *args)


def _macs(n: int, w_shape, out_size) -> int:
    """The multiply-adds of a convolution's forward (``n`` samples)."""
    return n * math.prod(w_shape) * math.prod(out_size)


class SplitCols:
    """The forward's columns as one entry per part (``None`` where the part's path keeps none),
    with the sample bounds of the parts."""

    __slots__ = ("bounds", "parts")

    def __init__(self, bounds, parts):
        self.bounds, self.parts = bounds, parts

    def conj(self) -> SplitCols:
        return SplitCols(self.bounds, [None if p is None else p.conj() for p in self.parts])


def _direct(xp, a, w_shape, geom) -> bool | str:
    """Whether the direct kernels take this convolution as at one thread, their parallel
    variants allowed (``conv_direct.THREADED``): then one part, since those beat two parts
    (session 19, 2 threads, ms a step: 64->64 on 8 x 16^2 4.48 -> 4.21, 32->32 k5 on 8 x
    32^2 10.2 -> 9.5, 3-D 16->32 on 2 x 16^3 8.5 -> 5.8; docs/kernels.md)."""
    if not conv_direct.THREADED:
        return False
    x_shape = (a.shape[0], w_shape[1] * geom.groups) + tuple(geom.in_size)
    if as_one_thread(conv_direct_cl.use_direct_cl, xp, a, w_shape, geom, x_shape):
        return "cl"  # (also with a weight over MAX_WEIGHT_BYTES: ``split_bounds``)
    return as_one_thread(conv_direct.use_direct, xp, a, w_shape, geom, x_shape)


def split_bounds(
    xp, n: int, w_shape, out_size, itemsize: int = 4, direct: bool | str = False
) -> list | None:
    """The sample bounds of the parts for a convolution of ``n`` samples with a weight
    ``w_shape`` and output size ``out_size`` at two or more threads: one part (``[0, n]``: the
    whole batch on the calling thread, as at one thread) or more; None where the convolution
    keeps its own multi-threaded paths (one thread, MKL off and no direct kernel, a large
    weight)."""
    if not ENABLED or xp is not np or n < 1:
        return None
    nt = num_threads()
    if nt < 2:
        return None
    big = math.prod(w_shape) * itemsize > MAX_WEIGHT_BYTES
    if big and direct != "cl":
        # OpenBLAS's threads; the channels-last direct kernel's parallel variants beat them
        # (256->256 on 4 x 7^2, 2 threads, ms a step: 8.95 -> 6.75 in one run, 6.73 -> 6.62
        # in another; torch 9.04 and 6.35) where MKL is on (Intel), not on AMD without it
        # (session 23: 6.93 OpenBLAS -> 8.49 in one part)
        return None
    if direct and DIRECT_WITHOUT_MKL:
        # the direct kernels need no MKL (``DIRECT_WITHOUT_MKL``); a weight over
        # MAX_WEIGHT_BYTES only with the channels-last kernel: without MKL its parallel
        # variants now beat OpenBLAS's threads too (session 26, AMD, 2 threads, ms a step:
        # 256->256 on 4 x 7^2 6.01 -> 5.53, 128->256 on 8 x 8^2 9.43 -> 5.78, 256->128 on
        # 4 x 14^2 10.5 -> 9.2; session 23 measured 6.93 -> 8.49 with the kernels then)
        return [0, n]
    if _mkl._enabled is False:
        return None
    macs = _macs(n, w_shape, out_size)
    # _ready: MKL's deferred load counts these products too (``mkl_gemm.LOAD_AFTER``)
    if not _mkl._ready(macs):
        return None
    nt = max(1, min(nt, MAX_PARTS, n, macs // MIN_PART_MACS))
    if math.prod(w_shape[1:]) < MIN_PART_ROWS or w_shape[0] < MIN_PART_OUT:
        nt = 1  # the gathers and copies outweigh the GEMMs: one part (module docstring)
    if direct:
        nt = 1  # the direct kernels' parallel variants (``_direct``)
    return [n * i // nt for i in range(nt + 1)]


def split_forward(xp, x, w, b, geom, forward):
    """``forward(xp, x, w, b, geom)`` (-> (y, cols)) by parts, or None where not split."""
    if x.dtype.char not in "fd" or w.dtype != x.dtype:
        return None
    direct = _direct(xp, x, w.shape, geom)
    bounds = split_bounds(xp, x.shape[0], w.shape, geom.out_size, x.dtype.itemsize, direct)
    if bounds is None:
        return None
    if len(bounds) == 2:
        return _one_part(_macs(x.shape[0], w.shape, geom.out_size), forward, xp, x, w, b, geom)
    y = np.empty((x.shape[0], w.shape[0]) + tuple(geom.out_size), dtype=x.dtype)

    def part(lo, hi):
        yp, cols = forward(xp, x[lo:hi], w, b, geom)
        y[lo:hi] = yp
        return cols

    return y, SplitCols(bounds, run_parts(part, bounds))


def split_input_grad(xp, g, w, geom, input_grad):
    """``input_grad(xp, g, w, geom)`` by parts, or None where not split."""
    if g.dtype.char not in "fd" or w.dtype != g.dtype:
        return None
    direct = _direct(xp, g, w.shape, geom)
    bounds = split_bounds(xp, g.shape[0], w.shape, geom.out_size, g.dtype.itemsize, direct)
    if bounds is None:
        return None
    if len(bounds) == 2:
        return _one_part(_macs(g.shape[0], w.shape, geom.out_size), input_grad, xp, g, w, geom)
    c = w.shape[1] * geom.groups
    dx = np.empty((g.shape[0], c) + tuple(geom.in_size), dtype=g.dtype)

    def part(lo, hi):
        dx[lo:hi] = input_grad(xp, g[lo:hi], w, geom)

    run_parts(part, bounds)
    return dx


def split_weight_grad(xp, x, g, w_shape, geom, cols, weight_grad):
    """``weight_grad(xp, x, g, w_shape, geom, cols)`` as the sum of the parts' gradients, or
    None where not split (``cols`` from an unsplit forward, or the rules of ``split_bounds``)."""
    if isinstance(cols, SplitCols):
        bounds, parts = cols.bounds, cols.parts
    elif x.dtype.char in "fd" and g.dtype == x.dtype:
        direct = _direct(xp, x, w_shape, geom)
        bounds = split_bounds(xp, x.shape[0], w_shape, geom.out_size, x.dtype.itemsize, direct)
        if bounds is None:
            return None
        if len(bounds) == 2:
            macs = _macs(x.shape[0], w_shape, geom.out_size)
            return _one_part(macs, weight_grad, xp, x, g, w_shape, geom, cols)
        if cols is not None:  # the whole batch's columns from a forward in one part
            return None
        parts = [None] * (len(bounds) - 1)
    else:
        return None
    starts = bounds[:-1]

    def part(lo, hi):
        return weight_grad(xp, x[lo:hi], g[lo:hi], w_shape, geom, parts[starts.index(lo)])

    grads = run_parts(part, bounds)
    gw = grads[0]
    for other in grads[1:]:
        gw += other
    return gw


def split_backward(xp, x, g, w, geom, cols, need, kernels, whole):
    """(dx, dw, db) of ``Conv`` by parts, each part computing the gradients ``need`` asks for
    from its samples (one hand-off to the pool for all three); ``whole(xp, x, g, w, geom,
    cols, need)`` as at one thread where there is one part; None where not split.

    ``kernels``: (input_grad, weight_grad, bias_grad); ``cols``: the forward's."""
    if g.dtype.char not in "fd" or not (w.dtype == x.dtype == g.dtype):
        return None
    if isinstance(cols, SplitCols):
        bounds, parts = cols.bounds, cols.parts
    else:
        direct = _direct(xp, x, w.shape, geom)
        bounds = split_bounds(xp, g.shape[0], w.shape, geom.out_size, g.dtype.itemsize, direct)
        if bounds is None:
            return None
        if len(bounds) == 2:
            macs = _macs(g.shape[0], w.shape, geom.out_size)
            return _one_part(macs, whole, xp, x, g, w, geom, cols, need)
        if cols is not None and need[1]:  # the whole batch's columns
            return None
        parts = [None] * (len(bounds) - 1)
    input_grad, weight_grad, bias_grad = kernels
    starts = bounds[:-1]
    dx = None
    if need[0]:
        dx = np.empty((g.shape[0], w.shape[1] * geom.groups) + tuple(geom.in_size), g.dtype)

    def part(lo, hi):
        gp = g[lo:hi]
        if need[0]:
            dx[lo:hi] = input_grad(xp, gp, w, geom)
        dw = (
            weight_grad(xp, x[lo:hi], gp, w.shape, geom, parts[starts.index(lo)])
            if need[1]
            else None
        )
        return dw, bias_grad(xp, gp) if need[2] else None

    grads = run_parts(part, bounds)
    sums = []
    for k in range(2):
        total = grads[0][k]
        for other in grads[1:]:
            if total is not None:
                total += other[k]
        sums.append(total)
    return dx, sums[0], sums[1]
