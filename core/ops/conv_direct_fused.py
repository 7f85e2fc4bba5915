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
from types import SimpleNamespace

import numpy as np

from . import conv_direct as _cd

ENABLED = True
# the strided input gradient (``conv_direct.direct_input_grad``) fused the same way, at two or
# more threads (``fused_input_grad``; False: its NumPy passes, A/B)
INPUT_GRAD = True
UNSIGNED = True  # the copy loops' runs as uint64 (``_table``; False: int64, as before, A/B)
# the fused loops at one thread too, for 2-D convolutions (False: only at two or more threads,
# as before; A/B): with uint64 runs they beat NumPy's passes there (``use_fused``); a 3-D step
# measured 3% slower (16->32 on 2 x 16^3, 8.40 -> 8.65 and 8.44 -> 8.82 ms), so 3-D keeps them
ONE_THREAD = True
# at two or more threads, the samples run on numba's threads from this many multiply-adds a
# call (the whole batch's); with fewer samples than threads the unfused path (its kernels
# split over output channels) runs instead
MIN_PAR_MACS = 1 << 20
# the parallel forward runs the samples in this many chunks a thread, each chunk reusing one
# sample's scratch of wide rows (numba's threads take the chunks as they come free)
CHUNKS_PER_THREAD = 4

_f = None  # the kernel module once loaded, False where numba is missing
_fi = None  # the input-gradient kernel module, likewise


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


@functools.lru_cache(maxsize=512)
def _unsigned(fn, *key):
    return fn(*key).astype(np.uint64)


def _table(fn, *key):
    """``fn(*key)``'s runs as uint64 (``UNSIGNED``): numba indexes with an unsigned index
    without the wraparound test of a possibly negative one, which kept the copy loops from
    vectorising (session 22, 1 thread, the strided input gradient's copies ~0.3 -> ~0.1 ms
    on 8 x 16 x 32^2)."""
    return _unsigned(fn, *key) if UNSIGNED else fn(*key)


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
    runs, zruns = _table(_runs, *key), _table(_zero_runs, *key, xf.shape[2])
    oruns = _table(_out_runs, npl, qpad, ph[-1], tuple(geom.out_size))
    # the wide rows of one sample at a time (of each chunk of samples on numba's threads),
    # not the whole batch's: the cnn workload's first convolution (1->32 on 64 x 28^2) held
    # 6.9 MiB of them beside its 6.1 MiB result (session 24, h4's step-memory profile)
    nt = _cd.kernel_threads()
    nb = 1 if nt < 2 or not _cd._parallel_ok() else min(n, CHUNKS_PER_THREAD * nt)
    yw = np.empty((nb, o, npl * qpad), dtype=dt)
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
    args = (np.ascontiguousarray(g).reshape(n * o, -1), _table(_out_runs, npl, qpad, wp, out))
    args += (_table(_out_zero_runs, npl, qpad, wp, out), gw.reshape(n * o, -1))
    _cd._call("widen", _cd.MIN_KERNEL_MACS, *args, mod=_f)
    return gw


def one_thread(geom) -> bool:
    """Whether the fused loops take this geometry at one kernel thread (``ONE_THREAD``)."""
    return ONE_THREAD and len(geom.kernel) == 2


def use_fused(x, o: int, geom) -> bool:
    """Whether ``fused_forward`` takes a direct forward: at two or more kernel threads
    (``conv_direct.with_kernel_threads``), with at least as many samples as threads and
    ``MIN_PAR_MACS``; at one thread too with ``ONE_THREAD``. Session 21 measured the fused
    loops no faster than NumPy's passes at one thread (16->16 on 8 x 32^2: 0.47 -> 0.52 ms);
    with uint64 runs (``_table``) they are faster (session 22, forward alone, 1 thread, ms:
    3->16 on 8 x 32^2 0.19 -> 0.13, 16->32 s2 0.38 -> 0.34, 3-D 16->32 3.09 -> 2.95)."""
    nt = _cd.kernel_threads()
    if not ENABLED or (nt < 2 and not one_thread(geom)) or x.shape[0] < nt or not available():
        return False
    ph, npl, _, _, qpad, offs = _cd._plan(x.shape, x.dtype.itemsize, geom)
    return x.shape[0] * o * x.shape[1] * len(offs) * npl * qpad >= MIN_PAR_MACS


# ---- the strided input gradient, one sample at a time (``_numba_conv_fused_ig``) ----------------
def _ig_available() -> bool:
    """Whether the fused input-gradient kernels load (``conv_direct.available``)."""
    global _fi
    if _fi is None:
        _fi = False
        if _cd.available():
            from . import _numba_conv_fused_ig

            _fi = _numba_conv_fused_ig
    return bool(_fi)


def use_fused_input_grad(g, w_shape, geom) -> bool:
    """Whether ``fused_input_grad`` takes a strided input gradient that
    ``conv_direct.use_direct_input_grad`` gave the direct kernels: the rules of ``use_fused``
    (two or more kernel threads or ``ONE_THREAD``, as many samples as threads,
    ``MIN_PAR_MACS``)."""
    nt = _cd.kernel_threads()
    if not (ENABLED and INPUT_GRAD) or (nt < 2 and not one_thread(geom)) or g.shape[0] < nt:
        return False
    if not _ig_available():
        return False
    macs = g.shape[0] * math.prod(w_shape) * math.prod(geom.in_size) // math.prod(geom.stride)
    return macs >= MIN_PAR_MACS


@functools.lru_cache(maxsize=256)
def _ig_tables(w_shape, stride, pad, dilation, kernel, in_size, out_size, itemsize):
    """The fused input gradient's plan (``conv_direct._input_grad_plan``) and its run tables:
    g's layout runs and zero runs, the phases' tap offsets (with starts), and per phase the
    runs (source offset, destination offset, count, destination step) of its wide rows into
    dx (with starts)."""
    geom = SimpleNamespace(
        stride=stride, pad=pad, dilation=dilation, kernel=kernel, in_size=in_size, out_size=out_size
    )
    plan = _cd._input_grad_plan(w_shape, geom, itemsize)
    m, qmax, gs, npl, step, q, qpad, phases = plan
    nd = len(kernel)
    need = (npl - 1) * step + qpad + sum(qmax[i] * math.prod(gs[i + 1 :]) for i in range(nd))
    p = max(math.prod(gs), need)
    gpad = tuple((qm, a - o - qm) for qm, a, o in zip(qmax, gs, out_size))
    gruns = _runs(out_size, (1,) * nd, gpad, gs)
    gzruns = _zero_runs(out_size, (1,) * nd, gpad, gs, p)
    offs = np.concatenate([o for _, o in phases.values()]).astype(np.int64)
    ostarts = np.cumsum([0] + [len(o) for _, o in phases.values()]).astype(np.int64)
    xst = [math.prod(in_size[i + 1 :]) for i in range(nd)]
    rows, dstarts = [], [0]
    for r in phases:
        sl = [_cd._phase_slices(a, lo, s, ri) for a, (lo, _), s, ri in zip(in_size, pad, stride, r)]
        cnts = [a.stop - a.start for a, _ in sl]
        if 0 not in cnts:
            lead = [
                [(a.start + j, b.start + j * b.step) for j in range(cnt)]
                for (a, b), cnt in zip(sl[:-1], cnts[:-1])
            ]
            a_last, b_last = sl[-1]
            for combo in itertools.product(*lead):
                # the wide rows: (planes of qpad,) rows of gs[-1]
                ai = [a for a, _ in combo]
                src = (ai[0] * qpad + ai[1] * gs[-1]) if nd == 3 else ai[0] * gs[-1]
                dst = sum(b * st for (_, b), st in zip(combo, xst))
                rows.append((src + a_last.start, dst + b_last.start, cnts[-1], stride[-1]))
        dstarts.append(len(rows))
    druns = np.array(rows, dtype=np.uint64).reshape(-1, 4)
    # unsigned runs: numba then indexes without the wraparound test of a possibly negative
    # index, which keeps the copy loops from vectorising
    u = np.uint64
    tables = (gruns.astype(u), gzruns.astype(u), offs, ostarts, druns, np.array(dstarts, u))
    return plan, p, tables


def fused_input_grad(g, w, geom):
    """``conv_direct.direct_input_grad`` by the fused kernel: per sample g's padded layout,
    every stride phase's micro-kernels and the scatter of its results into dx, the samples on
    numba's threads (``use_fused_input_grad`` must hold)."""
    _ig_available()  # (loads the kernels' module)
    n, o = g.shape[:2]
    c = w.shape[1]
    dt = g.dtype
    pad = tuple(tuple(p) for p in geom.pad)
    key = (tuple(w.shape), tuple(geom.stride), pad, tuple(geom.dilation), tuple(geom.kernel))
    key += (tuple(geom.in_size), tuple(geom.out_size), dt.itemsize)
    plan, p, (gruns, gzruns, offs, ostarts, druns, dstarts) = _ig_tables(*key)
    _, _, _, npl, step, _, qpad, phases = plan
    # (O, C, T) -> per phase (C / 8, O, T_k, 8): the transpose's weights, one block a phase
    wt = w.astype(dt, copy=False).reshape(o, c // _cd.OB, _cd.OB, -1).transpose(1, 0, 3, 2)
    blocks = [wt[:, :, idx].reshape(-1) for idx, _ in phases.values()]
    woffs = np.cumsum([0] + [b.size for b in blocks[:-1]]).astype(np.int64)
    gf = np.empty((n, o, p), dtype=dt)
    yw = np.empty((n, c, npl * qpad), dtype=dt)
    dx = np.empty((n, c) + tuple(geom.in_size), dtype=dt)
    zero = len(phases) < math.prod(geom.stride)  # some positions get no tap
    args = (np.ascontiguousarray(g).reshape(n, o, -1), gruns, gzruns, gf, np.concatenate(blocks))
    args += (woffs, offs, ostarts, step, qpad, yw, druns, dstarts, zero, dx.reshape(n, c, -1))
    _cd._call("input_grad", _cd.MIN_KERNEL_MACS, *args, mod=_fi)  # (the parallel variant)
    return dx
