"""The direct forward one sample at a time: layout, micro-kernels and crop in one compiled pass.

``conv_direct.direct_forward`` laid the whole batch's zero-padded input out with NumPy
(``_flat_input``: one strided copy per stride phase), ran the micro-kernels, and cropped the
wide rows with a second NumPy copy (``_crop``), then added the bias in a third pass. Those
passes ran on one thread at two threads, where they were about half of a few-channel
forward (16->32 s2 on 8 x 32^2, 1 thread: layout 0.13 + kernels 0.15 + crop 0.02 ms). Here
``_numba_conv_fused`` does the three per sample, the sample's layout and wide rows still in
cache, and at two or more threads runs the samples on numba's threads (``forward_par``), the
copies included. The layout is described by runs (``_runs``): per channel, where each input
row (of a stride phase) lands in the flat padded row; the crop by runs of the wide rows. The
padded input ``xf`` it writes is the same array as ``_flat_input``'s, so the forward keeps it
for the weight gradient as before (``DirectCols``). ``ENABLED = False``: the NumPy passes
(A/B).
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from . import conv_direct as _cd

ENABLED = True
# at two or more threads, the samples run on numba's threads from this many multiply-adds a
# call (the whole batch's); with fewer samples than threads the unfused path (its kernels
# split over output channels) runs instead
MIN_PAR_MACS = 1 << 20

_f = None  # the kernel module once loaded, False where numba is missing


def available() -> bool:
    """Whether the fused kernels load (``conv_direct.available``)."""
    global _f
    if _f is None:
        _f = False
        if _cd.available():
            from . import _numba_conv_fused

            _f = _numba_conv_fused
    return bool(_f)


@functools.lru_cache(maxsize=256)
def _runs(in_size, stride, pad, ph):
    """(R, 4) int64 runs (source offset, destination offset, count, source step) that lay one
    channel of the input (flat, ``in_size``) out as its zero-padded stride phases, one after
    another (``conv_direct._flat_input``)."""
    nd = len(in_size)
    size = math.prod(ph)
    xst = [math.prod(in_size[i + 1 :]) for i in range(nd)]
    pst = [math.prod(ph[i + 1 :]) for i in range(nd)]
    rows = []
    for k, r in enumerate(np.ndindex(*stride)):
        sl = [_cd._phase_slices(m, lo, s, ri) for m, (lo, _), s, ri in zip(in_size, pad, stride, r)]
        cnts = [a.stop - a.start for a, _ in sl]
        if 0 in cnts:
            continue
        lead = [
            [(a.start + j, b.start + j * b.step) for j in range(cnt)]
            for (a, b), cnt in zip(sl[:-1], cnts[:-1])
        ]
        a_last, b_last = sl[-1]
        for combo in itertools.product(*lead):
            src = sum(xi * st for (_, xi), st in zip(combo, xst)) + b_last.start
            dst = k * size + sum(ai * st for (ai, _), st in zip(combo, pst)) + a_last.start
            rows.append((src, dst, cnts[-1], stride[-1]))
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


def _gaps(starts, counts, p):
    """(Z, 2) int64 runs (start, stop) of [0, p) outside the runs ``starts`` / ``counts``."""
    covered = np.zeros(p + 2, dtype=bool)  # (a covered position either side)
    covered[[0, -1]] = True
    for dst, cnt in zip(starts, counts):
        covered[1 + dst : 1 + dst + cnt] = True
    edges = np.flatnonzero(np.diff(covered))  # starts and stops of the uncovered stretches
    return np.ascontiguousarray(edges.reshape(-1, 2), dtype=np.int64)


@functools.lru_cache(maxsize=256)
def _zero_runs(in_size, stride, pad, ph, p):
    """The runs of a padded row of ``p`` that no input lands on (``_gaps``)."""
    runs = _runs(in_size, stride, pad, ph)
    return _gaps(runs[:, 1], runs[:, 2], p)


@functools.lru_cache(maxsize=256)
def _out_zero_runs(npl, qpad, wp, out):
    """The runs of the wide rows (``npl * qpad``) that hold no output."""
    runs = _out_runs(npl, qpad, wp, out)
    return _gaps(runs[:, 0], runs[:, 2], npl * qpad)


@functools.lru_cache(maxsize=256)
def _out_runs(npl, qpad, wp, out):
    """(R, 3) int64 runs (source offset, destination offset, count) of the outputs in the wide
    rows (``conv_direct._crop``)."""
    rows = [
        (pl * qpad + i * wp, (pl * out[-2] + i) * out[-1], out[-1])
        for pl in range(npl)
        for i in range(out[-2])
    ]
    return np.array(rows, dtype=np.int64)


def fused_forward(x, w, b, geom, keep: bool = False):
    """``conv_direct.direct_forward`` by the fused kernel (its result and cols); where the
    weight gradient will take the channels-last kernel, cols keeps the padded input in that
    layout too (``DirectCols.xcl``), made from cache instead of a transposing copy later."""
    ph, npl, step, q, qpad, offs = _cd._plan(x.shape, x.dtype.itemsize, geom)
    n, c = x.shape[:2]
    o = w.shape[0]
    dt = x.dtype
    need = (npl - 1) * step + qpad + int(offs.max())
    xf = np.empty((n, c, max(math.prod(ph) * math.prod(geom.stride), need)), dtype=dt)
    wk = np.ascontiguousarray(
        w.astype(dt, copy=False).reshape(o // _cd.OB, _cd.OB, c, -1).transpose(0, 2, 3, 1)
    )
    pad = tuple(tuple(p) for p in geom.pad)
    key = (tuple(x.shape[2:]), tuple(geom.stride), pad, ph)
    runs, zruns = _runs(*key), _zero_runs(*key, xf.shape[2])
    oruns = _out_runs(npl, qpad, ph[-1], tuple(geom.out_size))
    yw = np.empty((n, o, npl * qpad), dtype=dt)
    y = np.empty((n, o) + tuple(geom.out_size), dtype=dt)
    bias = np.zeros(o, dt) if b is None else np.ascontiguousarray(b, dtype=dt)
    cl = keep and _cd.CL_WGRAD and c % (_cd.GVEC_BYTES // dt.itemsize) == 0
    xcl = np.empty((n, xf.shape[2], c) if cl else (0, 0, 0), dtype=dt)
    args = (np.ascontiguousarray(x).reshape(n, c, -1), runs, zruns, xf, xcl, wk, offs, step)
    args += (qpad, yw, oruns, bias, y.reshape(n, o, -1))
    _cd._call("forward", _cd.MIN_KERNEL_MACS, *args, mod=_f)  # (the parallel variant)
    return y, (_cd.DirectCols(None, xcl) if cl else _cd.DirectCols(xf)) if keep else None


def widen(g, npl: int, qpad: int, wp: int, out):
    """g (N, O, *out) in the wide rows (N, O, npl, qpad) of the direct weight gradient, zeros
    in the columns past the outputs, by numba's threads (``conv_direct.direct_weight_grad``)."""
    n, o = g.shape[:2]
    out = tuple(out)
    gw = np.empty((n, o, npl, qpad), dtype=g.dtype)
    args = (np.ascontiguousarray(g).reshape(n * o, -1), _out_runs(npl, qpad, wp, out))
    args += (_out_zero_runs(npl, qpad, wp, out), gw.reshape(n * o, -1))
    _cd._call("widen", _cd.MIN_KERNEL_MACS, *args, mod=_f)
    return gw


def use_fused(x, o: int, geom) -> bool:
    """Whether ``fused_forward`` takes a direct forward: at two or more kernel threads
    (``conv_direct.with_kernel_threads``), with at least as many samples as threads and
    ``MIN_PAR_MACS``. At one thread the fused loops measured no faster than NumPy's passes
    (16->16 on 8 x 32^2: 0.47 -> 0.52 ms; the copies are memory-bound either way)."""
    nt = _cd.kernel_threads()
    if not ENABLED or nt < 2 or x.shape[0] < nt or not available():
        return False
    ph, npl, _, _, qpad, offs = _cd._plan(x.shape, x.dtype.itemsize, geom)
    return x.shape[0] * o * x.shape[1] * len(offs) * npl * qpad >= MIN_PAR_MACS
