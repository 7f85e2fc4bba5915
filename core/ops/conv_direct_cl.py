"""Channels-last direct convolution for many channels on small planes (issue 23, session 20).

``conv_direct``'s kernels put output positions in the vector lanes, over wide rows of the
padded width: on 8^2 and 7^2 planes those compute 1.3-1.5x the outputs, so 128->128 on 8^2
and 256->256 on 7^2 stayed on channels-last im2col + MKL's GEMM, which ran ~55 G
multiply-adds/s there against oneDNN's ~76 (docs/kernels.md, session 19). Here the lanes hold
output channels (``_numba_conv_cl``, 256 bytes: 64 float32 / 32 float64) and the positions are
broadcast from a zero-padded channels-last copy of the input: one micro-kernel call computes
``CL_P`` output positions (any positions, from a table: no waste on any plane, any stride)
x one vector of output channels over all taps and input channels, at ~80 G multiply-adds/s.

- forward (``direct_cl_forward``): pad x into (N, *padded, C), re-lay the weight as (O / V,
  T, C, V), run the kernel into (positions, O), transpose back to channels-first;
- the stride-1 input gradient: the same, on g with the flipped transposed kernel
  (``conv._direct_transpose_geom``; ``flip=True`` lays it out straight from w);
- the weight gradient (``direct_cl_weight_grad``): from the forward's padded input
  (``ClCols``) and g channels-last, vectors along the output channels, ``CL_P`` input
  channels a call; above ``WGRAD_MAX_IN`` input channels, conv_cl's columns gathered from the
  kept input and MKL's GEMM.

Selected by ``use_direct_cl``: numba present, NumPy float32/float64, groups 1, 2-D or 3-D,
a kernel of 2+ taps, ``MIN_IN`` to ``MAX_IN`` input channels, one thread, output channels a
multiple of the vector or not (``TAIL``: the channels past the last whole vector, rounded up
to 64 bytes, run ``_numba_conv_cl_tail``'s kernels of 128 / 64-byte vectors; at most
``MAX_TAIL_WASTE`` computed channels per output channel), and where ``conv_direct`` does
not take the convolution (or does, on planes of at most ``OVER_DIRECT_MAX_L`` outputs with
``OVER_DIRECT_MIN_IN``+ channels, where this kernel measured faster). At two threads
``conv_split`` keeps it in one part and the kernel calls run their parallel variants from
``conv_direct.MIN_KERNEL_MACS`` (``conv_direct.THREADED``; numba's TBB layer only).
``ENABLED = False`` switches it off (A/B). The kernels are ``cache=True``: a fresh process's
first call compiles or loads them (numba's own start-up, ~1-2 s, is paid by the first
compiled kernel of any kind).
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np

from ..backend.threads import num_threads
from . import conv_direct

ENABLED = True
# output positions a micro-kernel call and bytes of output channels a vector (6 x 4 zmm
# accumulators; an early 8 x 2 zmm version ran the same ~68 G multiply-adds/s here); numba's
# on-disk cache keys on the kernel file: after changing one, touch _numba_conv_cl.py
CL_P, CL_VEC_BYTES = 6, 256
MIN_IN, MAX_IN = 16, 256
L1_BYTES = 32768  # weights of a block of input channels, at most
# where conv_direct's kernels take a convolution too, this one takes it with at most this
# many output positions a sample and this many input channels (1 thread, ms a step, conv_direct
# -> this: 64->64 on 8 x 16^2 4.67 -> 4.01, 4.89 -> 4.24; 64->128 on 8 x 16^2 9.53 -> 9.28;
# but 32->64 on 8 x 32^2 10.5 -> 11.1, 3-D 32->64 on 2 x 16^3 23.6 -> 27.3)
OVER_DIRECT_MAX_L, OVER_DIRECT_MIN_IN = 256, 32
CL_WGRAD = True  # the weight gradient by the channels-last kernel (False: GEMM, A/B)
PAD_ROWS = 0  # ``_row``: off (measured within noise, 256->256 on 4 x 7^2 and 128->128 8^2)
WGRAD_MAX_IN = 128  # the weight gradient's kernel up to this many input channels
# Output channels not a multiple of the vector (session 22): the channels past the last whole
# vector (the tail, rounded up to 64 bytes) run ``_numba_conv_cl_tail``'s narrower kernels.
# TAIL = False keeps such convolutions on the other paths (A/B); at most MAX_TAIL_WASTE
# computed output channels per output channel (40 -> 48: 1.2; 24 -> 32: 1.33)
TAIL = True
MAX_TAIL_WASTE = 1.34
POS_ALIGN = 24  # the position table's padding: a multiple of every kernel's positions a call

_k = None  # the kernel module once loaded, False where numba is missing or EMBER_NUMBA=0
_kt = None  # the tail kernels' module, loaded on first use


def available() -> bool:
    global _k
    if _k is None:
        _k = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_conv_cl

            if _numba_conv_cl.AVAILABLE:
                _k = _numba_conv_cl
    return bool(_k)


def _tail_kernels():
    global _kt
    if _kt is None:
        from . import _numba_conv_cl_tail as _kt
    return _kt


def _vec_lanes(itemsize: int) -> int:
    return CL_VEC_BYTES // itemsize


def _split_out(o: int, itemsize: int) -> tuple[int, int]:
    """(output channels in whole vectors, the tail's lanes: the rest rounded up to 64 bytes)."""
    v, u = _vec_lanes(itemsize), 64 // itemsize
    full = o // v * v
    return full, -(-(o - full) // u) * u


def _tail_pieces(full: int, r: int, itemsize: int):
    """(first channel, lanes) of each tail kernel's part: 128 bytes, then 64 if left."""
    h = 128 // itemsize
    pieces = [(full + i, h) for i in range(0, r - r % h, h)]
    if r % h:
        pieces.append((full + r - r % h, r % h))
    return pieces


def _call(name: str, macs: int, *args, mod=None) -> None:
    """The kernel ``name`` (of ``_numba_conv_cl``, or ``mod``) on ``args``, its parallel
    variant where threads are allowed (the rules of ``conv_direct._call``: numba's TBB layer
    only)."""
    mod = _k if mod is None else mod
    nt = getattr(conv_direct._tl, "n", 1) if conv_direct.THREADED else 1
    if nt < 2 or macs < conv_direct.MIN_KERNEL_MACS or not conv_direct._parallel_ok():
        getattr(mod, name)(*args)
        return
    import numba

    try:
        prev = numba.get_num_threads()
    except ValueError:  # no threading layer could be loaded: serial from now on
        conv_direct._PARALLEL_OK = False
        getattr(mod, name)(*args)
        return
    numba.set_num_threads(min(nt, numba.config.NUMBA_NUM_THREADS))  # (thread-local)
    try:
        getattr(mod, name + "_par")(*args)
    finally:
        numba.set_num_threads(prev)


def use_direct_cl(xp, x, w_shape, geom, x_shape=None) -> bool:
    """Whether the channels-last direct kernel takes this convolution (module docstring);
    ``x_shape`` stands in for ``x.shape`` where x is a placeholder of the dtype."""
    if not ENABLED or xp is not np or x.dtype.char not in "fd":
        return False
    nd = len(geom.kernel)
    if nd not in (2, 3) or geom.groups != 1 or math.prod(geom.kernel) < 2:
        return False
    o, c = w_shape[0], w_shape[1]
    if not MIN_IN <= c <= MAX_IN:
        return False
    if o % _vec_lanes(x.dtype.itemsize):  # a tail: narrower kernels (_numba_conv_cl_tail)
        full, r = _split_out(o, x.dtype.itemsize)
        if not TAIL or (full + r) > MAX_TAIL_WASTE * o:
            return False
    x_shape = x.shape if x_shape is None else x_shape
    if 0 in x_shape or 0 in geom.out_size or num_threads() != 1:
        return False
    if conv_direct.use_direct(xp, x, w_shape, geom, x_shape) and (
        math.prod(geom.out_size) > OVER_DIRECT_MAX_L or c < OVER_DIRECT_MIN_IN
    ):
        return False
    return available()


@functools.lru_cache(maxsize=256)
def _plan_of(n, in_size, c, stride, pad, dilation, kernel, out):
    """(padded sizes, tap offsets, position table) of the channels-last layout: the table
    holds each output position's first input element in the flat padded copy, padded with
    zeros (position 0, whose outputs are dropped) to a multiple of ``POS_ALIGN``."""
    nd = len(kernel)
    ps = tuple(m + lo + hi for m, (lo, hi) in zip(in_size, pad))
    st = [math.prod(ps[i + 1 :]) * c for i in range(nd)]
    offs = np.array(
        [sum(i * d * s for i, d, s in zip(idx, dilation, st)) for idx in np.ndindex(*kernel)],
        dtype=np.int64,
    )
    one = np.zeros(out, dtype=np.int64)
    for i in range(nd):
        ax = np.arange(out[i], dtype=np.int64) * stride[i] * st[i]
        one += ax.reshape((-1,) + (1,) * (nd - 1 - i))
    j = n * one.size
    pos = np.zeros(-(-j // POS_ALIGN) * POS_ALIGN, dtype=np.int64)
    pos[:j] = (np.arange(n, dtype=np.int64)[:, None] * (math.prod(ps) * c) + one.ravel()).ravel()
    return ps, offs, pos


def _aligned(shape, dtype):
    """An empty C-contiguous array whose data start on a 64-byte boundary: the kernel's vector
    loads and stores then never straddle two cache lines."""
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    buf = np.empty(size + 64 // dtype.itemsize, dtype=dtype)
    skip = (-buf.ctypes.data % 64) // dtype.itemsize
    return buf[skip : skip + size].reshape(shape)


def _row(c: int, itemsize: int) -> int:
    """The values a channels-last row (one position's channels) takes: c, plus 64 bytes
    where c's bytes are a multiple of ``PAD_ROWS`` (rows 512 bytes or 1 KB apart map to a few
    of L1's 64 sets; tried for the weight gradient of 256->256 on 4 x 7^2: 2.43 -> 2.41 ms)."""
    return c + 64 // itemsize if PAD_ROWS and (c * itemsize) % PAD_ROWS == 0 else c


def to_channels_last(x, ps, pad):
    """(flat, xh): x (N, C, *S) zero-padded into xh (N, *ps, C), the data at the low pads;
    xh is a view of the flat buffer, whose rows hold ``_row`` values, with ``CL_P`` spare
    values at its end (the weight gradient's last block of channels reads past the last
    position; those sums are dropped)."""
    nd, c = x.ndim - 2, x.shape[1]
    shape = (x.shape[0],) + tuple(ps) + (_row(c, x.dtype.itemsize),)
    flat = np.zeros(math.prod(shape) + CL_P, dtype=x.dtype)
    xh = flat[: math.prod(shape)].reshape(shape)[..., :c]
    inner = tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape[2:], pad))
    xh[(slice(None),) + inner] = x.transpose((0,) + tuple(range(2, 2 + nd)) + (1,))
    return flat, xh


class ClCols:
    """The forward's zero-padded channels-last input (N, *padded, C), kept for the weight
    gradient, which gathers ``conv_cl``'s columns from it without padding x again."""

    __slots__ = ("flat", "xh")  # (``to_channels_last``)

    def __init__(self, flat, xh):
        self.flat, self.xh = flat, xh

    def conj(self) -> ClCols:  # real dtypes only: the direct path takes float32/float64
        return self


def direct_cl_forward(x, w, b, geom, flip: bool = False, keep: bool = False):
    """(conv(x, w) + b, cols) by the channels-last direct kernel (``use_direct_cl`` must hold
    for the convolution computed). With ``flip``, w is a forward weight (O, C, *k) and the
    kernel computed is its flipped transpose (C, O, *k), as ``conv._flipped_transpose``: the
    stride-1 input gradient, with ``geom`` the transpose's (``conv._direct_transpose_geom``).
    With ``keep``, cols is the padded input as ``ClCols``, else None."""
    n, c = x.shape[:2]
    nd = len(geom.kernel)
    o = w.shape[1] if flip else w.shape[0]
    pad = tuple(tuple(p) for p in geom.pad)
    out = tuple(geom.out_size)
    ps, offs, pos = _plan_of(
        n,
        tuple(x.shape[2:]),
        _row(c, x.dtype.itemsize),
        geom.stride,
        pad,
        geom.dilation,
        geom.kernel,
        out,
    )
    flat, xh = to_channels_last(x, ps, pad)
    isz = x.dtype.itemsize
    v, t = _vec_lanes(isz), len(offs)
    full, r = _split_out(o, isz)
    w3 = np.ascontiguousarray(w, dtype=x.dtype).reshape(w.shape[0], w.shape[1], -1)
    # y's rows: whole vectors and the tail (zero weights past o, those outputs dropped)
    y = _aligned((len(pos), _row(o, isz) if not r else full + r), x.dtype)
    if full:
        # -> (O / V, T, C, V): a (tap, channel)'s V output channels side by side
        wk = _aligned((full // v, t, c, v), x.dtype)
        macs = full * c * t * len(pos)
        _call("weight_layout", macs, w3, flip, wk)  # (in parallel with the kernel's threads)
        # input channels a block: the block's weights within ~L1 (T x cb x V values)
        cb = max(4, min(c, L1_BYTES // (t * CL_VEC_BYTES)))
        _call("forward_cl", macs, flat, wk, offs, pos, cb, full, y)
    for o0, ri in _tail_pieces(full, r, isz):
        # the tail's weights (T, C, R), from w's last output channels (or input ones)
        wt = np.zeros((t, c, ri), dtype=x.dtype)
        m = min(ri, o - o0)
        if flip:  # the flipped transpose: wt[t, o, i] = w3[o, o0 + i, T - 1 - t]
            wt[:, :, :m] = w3[:, o0 : o0 + m, ::-1].transpose(2, 0, 1)
        else:
            wt[:, :, :m] = w3[o0 : o0 + m].transpose(2, 1, 0)
        cb = max(4, min(c, L1_BYTES // (t * ri * isz)))
        kt = _tail_kernels()
        _call("forward_cl_tail", ri * c * t * len(pos), flat, wt, offs, pos, cb, y, o0, mod=kt)
    yv = y[: n * math.prod(out), :o].reshape((n,) + out + (o,))
    yt = yv.transpose((0, nd + 1) + tuple(range(1, nd + 1)))
    if b is None:
        y = np.ascontiguousarray(yt)
    else:  # the bias added as the layout comes back: one pass, the same sums (8 x 64 x 16^2,
        # 1 thread: transpose 0.113 + bias 0.025 -> 0.111 ms)
        y = np.empty(yt.shape, dtype=x.dtype)
        np.add(yt, b.astype(x.dtype, copy=False).reshape((o,) + (1,) * nd), out=y)
    return y, ClCols(flat, xh) if keep else None


def use_direct_cl_weight_grad(cols) -> bool:
    """Whether the weight gradient from ``ClCols`` takes the kernel (``CL_WGRAD``, at most
    ``WGRAD_MAX_IN`` input channels), else conv_cl's columns from the kept input and a GEMM.
    1 thread, ms, GEMM path -> kernel: 128->128 on 8 x 8^2 1.14 -> 1.12 (the columns were
    free from the old forward; gathered from ClCols 1.27); 256->256 on 4 x 7^2 1.47 -> 2.41."""
    return CL_WGRAD and isinstance(cols, ClCols) and cols.xh.shape[-1] <= WGRAD_MAX_IN


def direct_cl_weight_grad(cols: ClCols, g, w_shape, geom):
    """d conv(x, w) / dw applied to g by the channels-last kernel, from the forward's padded
    channels-last input xh (``ClCols``): dw[o, c, t] = sum over positions j of
    ``xh[pos[j] + offs[t] + c] * g[j, o]``, vectors along o, CL_P input channels a call."""
    xh = cols.xh
    n, c, dt = xh.shape[0], xh.shape[-1], xh.dtype
    o = w_shape[0]
    pad = tuple(tuple(p) for p in geom.pad)
    out = tuple(geom.out_size)
    _, offs, pos = _plan_of(
        n,
        tuple(geom.in_size),
        _row(c, dt.itemsize),
        geom.stride,
        pad,
        geom.dilation,
        geom.kernel,
        out,
    )
    j = n * math.prod(out)
    full, r = _split_out(o, dt.itemsize)
    sd = full + r if r else o  # dw's rows: the tail's extra lanes are dropped
    gcl = _aligned((j, _row(o, dt.itemsize) if not r else sd), dt)
    gcl[:, :o].reshape(n, -1, o)[...] = g.reshape(n, o, -1).transpose(0, 2, 1)
    if r:
        gcl[:, o:] = 0
    t = len(offs)
    dwt = _aligned((-(-c // CL_P) * CL_P, t, sd), dt)
    if full:
        _call("weight_grad_cl", full * c * t * j, cols.flat, gcl, offs, pos, j, full, dwt)
    for o0, ri in _tail_pieces(full, r, dt.itemsize):
        args = (cols.flat, gcl, o0, ri, offs, pos, j, dwt, o0)
        _call("weight_grad_cl_tail", ri * c * t * j, *args, mod=_tail_kernels())
    dw = np.empty((sd, c * t), dtype=dt)
    _k.transpose2d(dwt[:c].reshape(c * t, sd), dw)
    return dw[:o].reshape(w_shape)
