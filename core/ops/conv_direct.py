"""Direct convolution at stride 1 and 2 with compiled register-blocked kernels (few channels).

For convolutions with few channels (16->16 3x3, 32->32 5x5, 3-D 16->32) the im2col + GEMM
paths spend about torch's whole step in three skinny GEMMs plus the gathers of their column
blocks (docs/kernels.md). Here the forward and the weight gradient are direct loops over the
zero-padded input (``_numba_conv_direct``: 8 output channels x 128 bytes of outputs kept in
vector registers over the whole reduction), and the input gradient, the transposed
convolution at stride 1, runs as the forward of g with the flipped kernel (``conv.py``'s
``_direct_transpose_geom``), so it takes this path too. No column matrix is made.

Each plane of the output (2-D: all of it; 3-D: one depth slice) is computed over wide rows:
the padded width, so that a kernel tap is one fixed offset into the flat padded input. The
``d * (k - 1)`` extra columns are cropped from the forward's output; in the weight gradient
they meet zeros of a widened copy of g (which is why an input with inf or NaN keeps the GEMM
path there: ``0 * inf`` would make a NaN that torch's gradient does not have).

At stride 2 the padded input is laid out as its stride phases (``_plan``), so a tap is again
one offset and the same kernels serve the forward and the weight gradient; the input gradient
runs per phase of the padded input as a stride-1 correlation of g with that phase's taps
(``direct_input_grad``). The forward keeps its padded input for the weight gradient
(``DirectCols``). At two or more kernel threads the forward runs one sample at a time, its
copies included, on numba's threads (``conv_direct_fused``).

Selected by ``use_direct`` (numba present, NumPy float32/float64, groups 1, 2-D or 3-D,
stride at most ``MAX_STRIDE``, output channels a multiple of 8 up to ``MAX_OUT``, input
channels up to ``MAX_IN``, at most ``MAX_WASTE`` computed positions per output; one thread:
at two, ``conv_split`` keeps a direct convolution in one part and its kernel calls run their
parallel variants, ``THREADED``). ``ENABLED = False`` switches it off (A/B).
"""

from __future__ import annotations

import functools
import math
import os
import threading

import numpy as np

from ..backend.threads import num_threads

ENABLED = True
# the kernels' blocking (``_numba_conv_direct`` reads these): output channels a call, taps and
# output channels a weight-gradient call, bytes of outputs a forward call and of lanes a
# weight-gradient vector. numba's on-disk cache keys on the kernel file, not on these: after
# changing one, touch _numba_conv_direct.py so that its kernels compile again
OB, TB, WOB, VEC_BYTES, GVEC_BYTES = 8, 3, 8, 128, 64
# output channels at most (a multiple of 8), input channels at most: 1 thread, process time,
# forward / input gradient / weight gradient, GEMM paths -> direct: 128->128 on 8 x 16^2
# 8.3 / 9.4 / 13.0 -> 8.2 / 7.6 / 7.7 ms, 64->128 on 8 x 16^2 4.7 / 6.2 / 5.5 -> 3.0 / 3.4 / 5.0
MAX_OUT = 128
MAX_IN = 128
# computed positions (wide rows rounded up to whole vectors) per output, at most: small planes
# lose, 128->128 on 8 x 8^2 (1.5) 1.7 / 2.2 / 1.8 -> 2.0 / 2.6 / 2.5 ms, 256->256 on 4 x 7^2
# (1.31) 3.0 / 4.3 / 2.8 -> 3.4 / 4.3 / 4.6; 2-D 32^2 k3 computes 1.06, 16^2 and 3-D 16^3 1.13
MAX_WASTE = 1.25
# stride at most (the stride phases' layout, ``_plan``)
MAX_STRIDE = 2
STRIDED_INPUT_GRAD = True  # a strided convolution's input gradient by phases (A/B)
CL_WGRAD = True  # the channels-last weight-gradient kernel (False: the lane-summing one, A/B)
MAX_WGRAD_CHANNELS = 256  # weight gradient: input x output channels, at most


# Two threads: the kernel calls (not the copies around them) run numba's parallel variants
# (``*_par``: the outer loop a prange), from MIN_KERNEL_MACS multiply-adds a call; and
# ``conv_split`` keeps a direct convolution in one part (``with_kernel_threads``). 2 threads,
# wall, ms a step, two parts -> one part + parallel kernels: 64->64 on 8 x 16^2 5.0 -> 3.5,
# 32->32 k5 on 8 x 32^2 11.8 -> 10.1, 3-D 16->32 on 2 x 16^3 8.4 -> 7.3. 16->16 on 8 x 32^2
# (20 M a call) lost a little in parallel in session 19 (2.3 -> 2.8) but won in session 20
# (from 2^24: 2.62 -> 2.27, 2.69 -> 2.16; from 2^20: 2.73 -> 2.18, 2.13 -> 1.85, 2.28 ->
# 2.00, 1.63 -> 1.75); smaller calls (3->16: 3.5 M, 16->32 s2: 9.4 M) measured mixed and stay
# serial. 1 << 23 since session 25 (with ``conv_split.MIN_THREADED_MACS``: the 1-D 64->64 k3
# on 8 x 128, 12.6 M a call, 1.16 -> 0.87 ms a step with the second core free; docs/kernels.md)
# 1 << 21 since session 26 (with ``conv_split.MIN_THREADED_MACS``; 2 threads, ms a step:
# 3->16 on 8 x 32^2 (3.5 M) 0.64 -> 0.51, 3->32 (7.1 M) 1.11 -> 0.79, 16->16 on 8 x 16^2 0.58
# -> 0.48, 8->16 (2.4 M) 0.43 -> 0.39; 1->32 on 16 x 28^2 0.89 -> 0.96; 1 << 20 lost on two of
# five smaller ones)
THREADED = True
MIN_KERNEL_MACS = 1 << 21
# the weight gradient widens g by chunks of samples of this many bytes of wide rows at most
# (0: all at once, A/B; the cnn workload's first convolution held 6.8 MiB of them)
WGRAD_CHUNK_BYTES = 1 << 20
_tl = threading.local()


def with_kernel_threads(n: int, fn, *args):
    """``fn(*args)`` with the direct kernels allowed ``n`` threads on this thread."""
    prev = getattr(_tl, "n", 1)
    _tl.n = n
    try:
        return fn(*args)
    finally:
        _tl.n = prev


_PARALLEL_OK: bool | None = None


def _parallel_ok() -> bool:
    """Whether numba's parallel kernels may run: only on its TBB threading layer, which is
    thread- and fork-safe (GNU OpenMP is not fork-safe, e.g. under DataLoader workers, and
    the workqueue layer aborts on concurrent launches from two Python threads); otherwise
    the serial kernels run (``_call`` also falls back when TBB cannot be loaded)."""
    global _PARALLEL_OK
    if _PARALLEL_OK is None:
        try:
            import numba
            from numba.np.ufunc import parallel

            if parallel._is_initialized:  # launched before us: usable only if it is TBB
                _PARALLEL_OK = numba.threading_layer() == "tbb"
            else:
                if numba.config.THREADING_LAYER == "default":
                    numba.config.THREADING_LAYER = "safe"  # TBB, or an error at launch
                _PARALLEL_OK = numba.config.THREADING_LAYER in ("safe", "tbb")
        except Exception:  # a numba without this layout: serial kernels
            _PARALLEL_OK = False
    return _PARALLEL_OK


def kernel_threads() -> int:
    """The threads the direct kernels' calls may use on this thread (``with_kernel_threads``)."""
    return getattr(_tl, "n", 1) if THREADED else 1


def _call(name: str, macs: int, *args, mod=None) -> None:
    """The kernel ``name`` of ``mod`` (default: ``_numba_conv_direct``) on ``args``, its
    parallel variant where threads are allowed."""
    _k_ = _k if mod is None else mod
    nt = kernel_threads()
    if nt < 2 or macs < MIN_KERNEL_MACS or not _parallel_ok():
        getattr(_k_, name)(*args)
        return
    import numba

    global _PARALLEL_OK
    try:
        prev = numba.get_num_threads()
    except ValueError:  # "No threading layer could be loaded" (no TBB): serial from now on
        _PARALLEL_OK = False
        getattr(_k_, name)(*args)
        return
    numba.set_num_threads(min(nt, numba.config.NUMBA_NUM_THREADS))  # (thread-local)
    try:
        getattr(_k_, name + "_par")(*args)
    finally:
        numba.set_num_threads(prev)


_k = None  # the kernel module once loaded, False where numba is missing or EMBER_NUMBA=0


def available() -> bool:
    """Whether the compiled kernels load (numba installed, ``EMBER_NUMBA`` not ``0``); numba
    is imported on the first call only, so ``import ember`` does not pay for it."""
    global _k
    if _k is None:
        _k = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_conv_direct  # (numba is an optional extra, "fast")

            if _numba_conv_direct.AVAILABLE:
                _k = _numba_conv_direct
    return bool(_k)


def _phase_sizes(ps, stride):
    """Per dim, the size of a stride phase of the padded input (its largest: phase 0)."""
    return tuple(-(-p // s) for p, s in zip(ps, stride))


def _plan(x_shape, itemsize: int, geom):
    """``_plan_of`` for a geometry (cached: the selection asks several times a step)."""
    pad = tuple(tuple(p) for p in geom.pad)
    return _plan_of(
        tuple(x_shape[2:]), itemsize, geom.stride, pad, geom.dilation, geom.kernel, geom.out_size
    )


@functools.lru_cache(maxsize=256)
def _plan_of(in_size, itemsize, stride, pad, dilation, kernel, out):
    """(phase sizes, planes, plane step, q, qpad, offsets) of the wide-row layout.

    At stride s the padded input is split into its prod(s) stride phases (``xpad[r::s]`` per
    dim), laid one after another per channel: a tap ``d * k = s * q + r`` then reads phase
    ``r`` at the fixed offset ``q``, so a strided convolution is the same flat loop as a
    stride-1 one over the phases (wide rows of the phase width)."""
    nd = len(kernel)
    ps = tuple(n + lo + hi for n, (lo, hi) in zip(in_size, pad))
    ph = _phase_sizes(ps, stride)
    wp = ph[-1]
    npl = out[0] if nd == 3 else 1
    step = ph[-2] * wp if nd == 3 else 0
    q = out[-2] * wp
    jb = VEC_BYTES // itemsize
    qpad = -(-q // jb) * jb
    strides = [math.prod(ph[i + 1 :]) for i in range(nd)]
    size = math.prod(ph)
    offs = np.array(
        [
            np.ravel_multi_index([i * d % s for i, d, s in zip(idx, dilation, stride)], stride)
            * size
            + sum(i * d // s * st for i, d, s, st in zip(idx, dilation, stride, strides))
            for idx in np.ndindex(*kernel)
        ],
        dtype=np.int64,
    )
    # (shared by the cache's callers, which only read it; left writeable so that the kernels
    # see one array type, not a second, read-only, compiled signature)
    return ph, npl, step, q, qpad, offs


def use_direct(xp, x, w_shape, geom, x_shape=None) -> bool:
    """Whether the direct kernels take this convolution (module docstring); ``x_shape``
    stands in for ``x.shape`` where x is a placeholder of the dtype."""
    if not ENABLED or xp is not np or x.dtype.char not in "fd":
        return False
    nd = len(geom.kernel)
    if nd not in (2, 3) or geom.groups != 1 or max(geom.stride) > MAX_STRIDE:
        return False
    o, c = w_shape[0], w_shape[1]
    if o % OB or o > MAX_OUT or c > MAX_IN or math.prod(geom.kernel) < 2:
        return False
    x_shape = x.shape if x_shape is None else x_shape
    if 0 in x_shape or 0 in geom.out_size or num_threads() != 1 or not available():
        return False
    _, npl, _, _, qpad, _ = _plan(x_shape, x.dtype.itemsize, geom)
    return npl * qpad <= MAX_WASTE * math.prod(geom.out_size)


def use_direct_weight_grad(xp, x, w_shape, geom) -> bool:
    """Whether the direct kernel takes the weight gradient: ``use_direct``, and input channels
    a multiple of 64 bytes of lanes (16 float32; the channels-last kernel) or at most
    ``MAX_WGRAD_CHANNELS`` input x output channels (the kernel that sums lanes). 1 thread,
    process time, weight gradient alone, GEMM path -> channels-last kernel: 16->16 on 8 x 32^2
    k3 1.45 -> 0.93 ms, 64->64 on 8 x 16^2 3.20 -> 2.59, 3-D 16->32 on 2 x 16^3 5.2 -> 4.1,
    32->32 k5 on 8 x 32^2 10.3 -> 7.0. The lane-summing kernel (24 products per 11 vector
    loads, along positions) only wins with few channels: 3->16 0.36 -> 0.19, but 64->64 2.0
    -> 4.2."""
    if not use_direct(xp, x, w_shape, geom):
        return False
    lanes = GVEC_BYTES // x.dtype.itemsize
    return w_shape[1] % lanes == 0 or w_shape[0] * w_shape[1] <= MAX_WGRAD_CHANNELS


def _phase_slices(n, lo, s, r):
    """(phase slice, input slice) along one dim: padded positions ``r + s * a`` that hold
    input ``r + s * a - lo`` (of ``n``)."""
    a0 = max(0, -(-(lo - r) // s))
    x0 = r + s * a0 - lo
    cnt = len(range(x0, n, s)) if x0 < n else 0
    return slice(a0, a0 + cnt), slice(x0, x0 + s * (cnt - 1) + 1 if cnt else x0, s)


def _flat_input(x, geom, ph, need):
    """The zero-padded input flat per channel, its stride phases one after another, (N, C,
    P), with spare zeros at the end for the last wide row's reads."""
    n, c = x.shape[:2]
    size = math.prod(ph)
    nph = math.prod(geom.stride)
    xf = np.zeros((n, c, max(size * nph, need)), dtype=x.dtype)
    for i, r in enumerate(np.ndindex(*geom.stride)):
        sl = [
            _phase_slices(m, lo, s, ri)
            for m, (lo, _), s, ri in zip(x.shape[2:], geom.pad, geom.stride, r)
        ]
        dst = xf[:, :, i * size : (i + 1) * size].reshape((n, c) + ph)
        dst[(slice(None),) * 2 + tuple(a for a, _ in sl)] = x[
            (slice(None),) * 2 + tuple(b for _, b in sl)
        ]
    return xf


def _crop(a, npl, q, wp, out):
    """The outputs (N, O, *out) of a wide-row array (N, O, npl, qpad), as a view."""
    n, o = a.shape[:2]
    v = a[..., :q].reshape(n, o, npl, out[-2], wp)[..., : out[-1]]
    return v.reshape((n, o) + tuple(out)) if len(out) == 3 else v[:, :, 0]


class DirectCols:
    """The forward's zero-padded flat input (``_flat_input``), kept as the "columns" for the
    direct weight gradient, which then need not build it again; ``xcl``: the same
    channels-last, where the fused forward made it (``conv_direct_fused``), else None."""

    __slots__ = ("xf", "xcl")

    def __init__(self, xf, xcl=None):
        self.xf, self.xcl = xf, xcl

    def conj(self) -> DirectCols:  # real dtypes only: the direct path takes float32/float64
        return self


def direct_forward(x, w, b, geom, keep: bool = False):
    """(conv(x, w) + b, cols) by the direct kernel (``use_direct`` must hold); with ``keep``,
    cols is the padded input as ``DirectCols`` for ``direct_weight_grad``, else None."""
    from . import conv_direct_fused as _fused  # (imports this module)

    if _fused.use_fused(x, w.shape[0], geom):  # layout, kernels and crop in one pass
        return _fused.fused_forward(x, w, b, geom, keep)
    ph, npl, step, q, qpad, offs = _plan(x.shape, x.dtype.itemsize, geom)
    xf = _flat_input(np.ascontiguousarray(x), geom, ph, (npl - 1) * step + qpad + offs.max())
    o, c = w.shape[:2]
    # (O, C, T) -> (O / 8, C, T, 8): a tap's 8 weights side by side for the broadcasts
    wk = np.ascontiguousarray(
        w.astype(x.dtype, copy=False).reshape(o // OB, OB, c, -1).transpose(0, 2, 3, 1)
    )
    y = np.empty((x.shape[0], o, npl, qpad), dtype=x.dtype)
    macs = x.shape[0] * o * c * len(offs) * npl * qpad
    _call("forward", macs, xf, wk, offs, step, y)
    crop = _crop(y, npl, q, ph[-1], geom.out_size)
    if b is None:
        y = np.ascontiguousarray(crop)
    else:  # the bias added in the crop's copy: one pass, the same sums
        y = np.empty(crop.shape, dtype=x.dtype)
        np.add(crop, b.astype(x.dtype, copy=False).reshape((o,) + (1,) * len(geom.kernel)), out=y)
    return y, DirectCols(xf) if keep else None


def direct_weight_grad(x, g, w_shape, geom, xf=None):
    """d conv(x, w) / dw applied to g by the direct kernel, or None where x is not finite;
    ``xf``: the forward's padded flat input or its ``DirectCols``, else built here."""
    if not np.isfinite(x).all():
        return None
    ph, npl, step, q, qpad, offs = _plan(x.shape, x.dtype.itemsize, geom)
    xcl = xf.xcl if isinstance(xf, DirectCols) else None
    xf = xf.xf if isinstance(xf, DirectCols) else xf
    cl = CL_WGRAD and w_shape[1] % (GVEC_BYTES // x.dtype.itemsize) == 0
    if xf is None and (xcl is None or not cl):
        xf = _flat_input(np.ascontiguousarray(x), geom, ph, (npl - 1) * step + qpad + offs.max())
    n, o = g.shape[:2]
    from . import conv_direct_fused as _fused

    t = len(offs)
    t3 = -(-t // TB) * TB
    offs3 = np.zeros(t3, dtype=np.int64)  # padded taps read offset 0; their sums are dropped
    offs3[:t] = offs
    lanes = GVEC_BYTES // x.dtype.itemsize
    macs = n * o * w_shape[1] * t * npl * qpad
    if cl:
        # channels-last input: a vector of input channels against g's scalars, no lane sums
        if xcl is None:
            xcl = np.ascontiguousarray(xf.transpose(0, 2, 1))
        dw = np.zeros((o, t3, w_shape[1]), dtype=x.dtype)
        name, xs = "weight_grad_cl", xcl
    else:
        dw = np.zeros((o, w_shape[1], t3, lanes), dtype=x.dtype)
        name, xs = "weight_grad", xf
    # g widened (by the compiled loop, on numba's threads at two threads) a chunk of samples
    # at a time: the kernels add each sample's sums into dw in sample order (the same bits)
    fused = kernel_threads() > 1 or _fused.one_thread(geom)
    fused = fused and _fused.ENABLED and _fused.available()
    per = o * npl * qpad * x.dtype.itemsize
    nc = max(1, min(n, WGRAD_CHUNK_BYTES // per)) if fused and WGRAD_CHUNK_BYTES else n
    for n0 in range(0, n, nc):
        gc = g[n0 : n0 + nc]
        if fused:
            gw = _fused.widen(gc, npl, qpad, ph[-1], geom.out_size)
        else:
            gw = np.zeros((len(gc), o, npl, qpad), dtype=x.dtype)
            _crop(gw, npl, q, ph[-1], geom.out_size)[...] = gc
        _call(name, macs, xs[n0 : n0 + nc], gw, offs3, step, dw)  # (the batch's macs)
        del gw  # (before the next chunk's)
    if cl:
        return np.ascontiguousarray(dw[:, :t].transpose(0, 2, 1)).reshape(w_shape)
    return dw[:, :, :t].sum(axis=-1).reshape(w_shape)


# the strided input gradient lives in its own file; its names stay importable from here
from .conv_direct_ig import (  # noqa: E402, F401
    _input_grad_plan,
    direct_input_grad,
    use_direct_input_grad,
)
