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
- the layout copies (the padding into channels-last, the rows back with the bias) by
  ``_numba_conv_layout``'s tiles (``conv_direct_cl_layout``; ``LAYOUT``; whole tiles
  transposed in vector registers, ``_numba_transpose``), the forward's rows back from each
  chunk as it is computed where the output channels are whole vectors (``NCHW_OUT``,
  ``_numba_conv_cl_nchw``); g's compact rows for the weight gradient come from the input
  gradient's padded copy of g in the same backward (``share_g``);
- the weight gradient (``direct_cl_weight_grad``, in ``conv_direct_cl_wgrad``): from the
  forward's padded input (``ClCols``) and g channels-last, vectors along the output channels,
  ``CL_P`` input channels a call; above ``WGRAD_MAX_IN`` input channels, conv_cl's columns
  gathered from the kept input and MKL's GEMM.

Selected by ``use_direct_cl``: numba present, NumPy float32/float64, groups 1, 2-D or 3-D,
a kernel of 2+ taps, ``MIN_IN`` to ``MAX_IN`` input channels (to ``MAX_IN_WIDE`` with
``WIDE_MIN_POS``+ output positions), one thread, output channels a
multiple of the vector or not (``TAIL``: the channels past the last whole vector, rounded up
to 64 bytes, run ``_numba_conv_cl_tail``'s kernels of 128 / 64-byte vectors; at most
``MAX_TAIL_WASTE`` computed channels per output channel), and where ``conv_direct`` does
not take the convolution (or does, by ``_over_direct``'s rules, or on planes of at most
``OVER_DIRECT_MAX_L`` outputs with ``OVER_DIRECT_MIN_IN``+ channels, where this kernel
measured faster). At two threads
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
import threading

import numpy as np

from ..backend.threads import num_threads
from . import conv_direct

ENABLED = True
# output positions a micro-kernel call and bytes of output channels a vector (6 x 4 zmm
# accumulators; an early 8 x 2 zmm version ran the same ~68 G multiply-adds/s here); numba's
# on-disk cache keys on the kernel file: after changing one, touch _numba_conv_cl.py
CL_P, CL_VEC_BYTES = 6, 256
MIN_IN, MAX_IN = 16, 256
# up to MAX_IN_WIDE input channels where the convolution has WIDE_MIN_POS+ output positions:
# the weight's two re-layouts (9.4 MB at 512 x 512 x 9) are then paid for by the kernel's rate
# over im2col + GEMM (session 26, 1 thread, ms a step, GEMM -> this: 512->512 on 8 x 7^2
# 63.8 -> 59.2, 4 x 7^2 33.6 -> 33.4, 384->384 on 3 x 7^2 15.0 -> 13.6, 512->256 on 2 x 14^2
# 29.7 -> 29.0; but 512->512 on 2 x 7^2 18.1 -> 20.1, 1024->1024 on 1 x 7^2 41.7 -> 55.8)
MAX_IN_WIDE, WIDE_MIN_POS = 1024, 128
# weights of a block of input channels of the forward kernels, at most (``_channel_block``;
# session 25, h6: 32 KB -> 576 KB, 2% faster kernels; other rounding; docs/kernels.md)
BLOCK_BYTES = 589824
# where conv_direct's kernels take a convolution too, this one takes it with at most this
# many output positions a sample and this many input channels (1 thread, ms a step, conv_direct
# -> this: 64->64 on 8 x 16^2 4.67 -> 4.01, 4.89 -> 4.24; 64->128 on 8 x 16^2 9.53 -> 9.28;
# but 32->64 on 8 x 32^2 10.5 -> 11.1, 3-D 32->64 on 2 x 16^3 23.6 -> 27.3)
OVER_DIRECT_MAX_L, OVER_DIRECT_MIN_IN = 256, 32
# ... and on any plane (``_over_direct``) from this many output channels, or 3-D, or with
# OVER_DIRECT_MIN_IN+ input channels at one kernel thread: since the layout copies moved to
# vector-register transposes (session 26). 1 thread, ms a step, conv_direct -> this: 32->32 k5
# on 8 x 32^2 14.37 -> 13.38, 3-D 16->32 on 2 x 16^3 7.78 -> 6.94 (its input gradient, 32 ->
# 16, too), 64->64 on 4 x 56^2 29.4 -> 27.8, 64->16 on 8 x 32^2 5.53 -> 4.92; 16->16 on 8 x
# 32^2 even (1.53 / 1.55); at 2 threads 16 output channels on 2-D planes lose (32->16 on 8 x
# 32^2 2.21 -> 2.47, 16->16 1.05 -> 1.08) and stay with conv_direct; docs/kernels.md
OVER_DIRECT_MIN_OUT = 32
OVER_DIRECT_ANY_PLANE = True  # (False: only the small planes' rule above, A/B)
CL_WGRAD = True  # the weight gradient by the channels-last kernel (False: GEMM, A/B)
PAD_ROWS = 0  # ``_row``: off (measured within noise, 256->256 on 4 x 7^2 and 128->128 8^2)
# the weight gradient's kernel up to this many input channels, else conv_cl's columns and a
# GEMM (session 26, ms a step, GEMM -> kernel, 1 thread: 256->256 on 4 x 7^2 7.63 -> 7.14,
# 256->128 on 4 x 14^2 14.7 -> 13.3, 512->512 on 4 x 7^2 32.8 -> 31.1; 2 threads: 256->256 on
# 8 x 7^2 8.77 -> 7.25, 192->192 on 8 x 8^2 6.98 -> 5.59; session 20 had 128 -> 256 on 4 x
# 7^2 1.47 -> 2.41 ms, the kernel alone, before its later rounds)
WGRAD_MAX_IN = 1024
# Output channels not a multiple of the vector (session 22): the channels past the last whole
# vector (the tail, rounded up to 64 bytes) run ``_numba_conv_cl_tail``'s narrower kernels.
# TAIL = False keeps such convolutions on the other paths (A/B); at most MAX_TAIL_WASTE
# computed output channels per output channel (40 -> 48: 1.2; 24 -> 32: 1.33)
TAIL = True
MAX_TAIL_WASTE = 1.34
POS_ALIGN = 24  # the position table's padding: a multiple of every kernel's positions a call

# the layout copies by ``_numba_conv_layout``'s tiles (False: NumPy's transposing copies, A/B)
LAYOUT = True
# ... and at two or more kernel threads by their parallel variants (a task a sample's tile of
# 16 channels), from the kernels' ``conv_direct.MIN_KERNEL_MACS`` (False: serial, A/B;
# session 25, docs/kernels.md)
PAR_LAYOUT = True
# the stride-1 input gradient writes g's compact channels-last rows in the same pass as its
# padded copy, and the weight gradient of the same backward takes them (``share_g``; False:
# the weight gradient transposes g again, A/B)
SHARE_G = True
# output channels in whole vectors: the forward kernel's chunks go straight back to (N, O, *out)
# with the bias (``_numba_conv_cl_nchw``), without the (positions, O) buffer and ``from_cl``'s
# pass over it (False: the buffer and the copy, A/B; session 26, docs/kernels.md)
NCHW_OUT = True

_k = None  # the kernel module once loaded, False where numba is missing or EMBER_NUMBA=0
_kt = None  # the tail kernels' module, loaded on first use
_kn = None  # the channels-first-output kernels' module, loaded on first use
_shared = threading.local()  # (g, its compact rows or None): ``share_g``


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
    """The kernel ``name`` of ``_numba_conv_cl`` (or ``mod``) on ``args``, by
    ``conv_direct._call``'s rules (its parallel variant where threads are allowed)."""
    conv_direct._call(name, macs, *args, mod=_k if mod is None else mod)


def use_direct_cl(xp, x, w_shape, geom, x_shape=None) -> bool:
    """Whether the channels-last direct kernel takes this convolution (module docstring);
    ``x_shape`` stands in for ``x.shape`` where x is a placeholder of the dtype."""
    if not ENABLED or xp is not np or x.dtype.char not in "fd":
        return False
    nd = len(geom.kernel)
    if nd not in (2, 3) or geom.groups != 1 or math.prod(geom.kernel) < 2:
        return False
    o, c = w_shape[0], w_shape[1]
    if not MIN_IN <= c <= max(MAX_IN, MAX_IN_WIDE):
        return False
    if o % _vec_lanes(x.dtype.itemsize):  # a tail: narrower kernels (_numba_conv_cl_tail)
        full, r = _split_out(o, x.dtype.itemsize)
        if not TAIL or (full + r) > MAX_TAIL_WASTE * o:
            return False
    x_shape = x.shape if x_shape is None else x_shape
    if 0 in x_shape or 0 in geom.out_size or num_threads() != 1:
        return False
    if c > MAX_IN and x_shape[0] * math.prod(geom.out_size) < WIDE_MIN_POS:
        return False
    if (
        not _over_direct(o, c, nd)
        and (math.prod(geom.out_size) > OVER_DIRECT_MAX_L or c < OVER_DIRECT_MIN_IN)
        and conv_direct.use_direct(xp, x, w_shape, geom, x_shape)
    ):
        return False
    return available()


def _over_direct(o: int, c: int, nd: int) -> bool:
    """Whether this kernel takes a convolution of ``c`` -> ``o`` channels that ``conv_direct``'s
    kernels take too, on any plane (``OVER_DIRECT_MIN_OUT``)."""
    if not OVER_DIRECT_ANY_PLANE:
        return False
    one = conv_direct.kernel_threads() < 2
    return o >= OVER_DIRECT_MIN_OUT or nd == 3 or (one and c >= OVER_DIRECT_MIN_IN)


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


def _geom_plan(n: int, c: int, itemsize: int, geom):
    """``_plan_of`` for ``n`` samples of ``c`` channels of a convolution's ``geom``."""
    return _plan_of(
        n,
        tuple(geom.in_size),
        _row(c, itemsize),
        geom.stride,
        tuple(tuple(p) for p in geom.pad),
        geom.dilation,
        geom.kernel,
        tuple(geom.out_size),
    )


def _aligned(shape, dtype):
    """An empty C-contiguous array whose data start on a 64-byte boundary: the kernel's vector
    loads and stores then never straddle two cache lines."""
    dtype = np.dtype(dtype)
    size = math.prod(shape)
    buf = np.empty(size + 64 // dtype.itemsize, dtype=dtype)
    skip = (-buf.ctypes.data % 64) // dtype.itemsize
    return buf[skip : skip + size].reshape(shape)


def _trim(j: int, p: int) -> int:
    """The rows a forward kernel of ``p`` positions a call computes for ``j`` positions."""
    return -(-j // p) * p


def _channel_block(c: int, per_channel: int) -> int:
    """Input channels a block of the forward kernels: the fewest blocks whose weights
    (``per_channel`` bytes a channel) fit ``BLOCK_BYTES``, of equal sizes."""
    nb = max(1, -(-c * per_channel // BLOCK_BYTES))
    return max(4, -(-c // nb))


def _row(c: int, itemsize: int) -> int:
    """The values a channels-last row (one position's channels) takes: c, plus 64 bytes
    where c's bytes are a multiple of ``PAD_ROWS`` (rows 512 bytes or 1 KB apart map to a few
    of L1's 64 sets; tried for the weight gradient of 256->256 on 4 x 7^2: 2.43 -> 2.41 ms)."""
    return c + 64 // itemsize if PAD_ROWS and (c * itemsize) % PAD_ROWS == 0 else c


def _nchw_kernels():
    global _kn
    if _kn is None:
        from . import _numba_conv_cl_nchw as _kn
    return _kn


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
    ps, offs, pos = _geom_plan(n, c, x.dtype.itemsize, geom)
    isz = x.dtype.itemsize
    comp = None
    if flip and getattr(_shared, "g", None) is x:  # the weight gradient will read g's rows
        comp = _g_rows(x.shape[0] * math.prod(x.shape[2:]), x.shape[1], x.dtype)
        _shared.rows = comp
    v, t = _vec_lanes(isz), len(offs)
    full, r = _split_out(o, isz)
    macs = -(-o // v) * v * c * t * len(pos)
    flat, xh = to_channels_last(x, ps, pad, comp, macs)
    w3 = np.ascontiguousarray(w, dtype=x.dtype).reshape(w.shape[0], w.shape[1], -1)
    kl = _layout_kernels()
    direct_out = NCHW_OUT and not r and kl is not None
    # y's rows: whole vectors and the tail (zero weights past o, those outputs dropped)
    if not direct_out:
        y = _aligned((len(pos), _row(o, isz) if not r else full + r), x.dtype)
    if full:
        # -> (O / V, T, C, V): a (tap, channel)'s V output channels side by side
        wk = _aligned((full // v, t, c, v), x.dtype)
        macs = full * c * t * len(pos)
        _call("weight_layout", macs, w3, flip, wk)  # (in parallel with the kernel's threads)
        # input channels a block: the block's weights within BLOCK_BYTES (T x cb x V values)
        cb = _channel_block(c, t * CL_VEC_BYTES)
        # only the positions up to the kernel's next multiple of CL_P: the rest of the table's
        # padding (to POS_ALIGN) would compute dropped outputs (4 x 7^2: 216 -> 198 rows)
        jr = n * math.prod(out)
        jm = _trim(jr, CL_P)
        if direct_out:
            res = np.empty((n, o) + out, dtype=x.dtype)
            ys = _aligned((_nchw_kernels().CHUNK * CL_P, v), x.dtype)
            args = (flat, wk, offs, pos[:jm], cb, jr, ys, b is not None, _bias(b, x.dtype))
            _call("forward_cl_nchw", macs, *args, res.reshape(n, o, -1), mod=_nchw_kernels())
            return res, ClCols(flat, xh) if keep else None
        _call("forward_cl", macs, flat, wk, offs, pos[:jm], cb, full, y[:jm])
    for o0, ri in _tail_pieces(full, r, isz):
        # the tail's weights (T, C, R), from w's last output channels (or input ones)
        wt = np.zeros((t, c, ri), dtype=x.dtype)
        m = min(ri, o - o0)
        if flip:  # the flipped transpose: wt[t, o, i] = w3[o, o0 + i, T - 1 - t]
            wt[:, :, :m] = w3[:, o0 : o0 + m, ::-1].transpose(2, 0, 1)
        else:
            wt[:, :, :m] = w3[o0 : o0 + m].transpose(2, 1, 0)
        cb = _channel_block(c, t * ri * isz)
        kt = _tail_kernels()
        jt = _trim(n * math.prod(out), math.lcm(*kt.TAIL_POS))
        tm = ri * c * t * len(pos)
        _call("forward_cl_tail", tm, flat, wt, offs, pos[:jt], cb, y[:jt], o0, mod=kt)
    if kl is not None:  # the rows back to (N, O, *out), the bias added in the same pass
        res = np.empty((n, o) + out, dtype=x.dtype)
        _copy(
            kl,
            "from_cl",
            macs,
            y.reshape(-1),
            y.shape[1],
            b is not None,
            _bias(b, x.dtype),
            res.reshape(n, o, -1),
        )
        return res, ClCols(flat, xh) if keep else None
    yv = y[: n * math.prod(out), :o].reshape((n,) + out + (o,))
    yt = yv.transpose((0, nd + 1) + tuple(range(1, nd + 1)))
    if b is None:
        y = np.ascontiguousarray(yt)
    else:  # the bias added as the layout comes back: one pass, the same sums (8 x 64 x 16^2,
        # 1 thread: transpose 0.113 + bias 0.025 -> 0.111 ms)
        y = np.empty(yt.shape, dtype=x.dtype)
        np.add(yt, b.astype(x.dtype, copy=False).reshape((o,) + (1,) * nd), out=y)
    return y, ClCols(flat, xh) if keep else None


def _bias(b, dt):
    """The bias as the layout kernels take it: (O,) of dtype ``dt``, or empty for none."""
    return np.zeros(0, dt) if b is None else b.astype(dt, copy=False).ravel()


def _g_rows(j: int, o: int, dt):
    """An aligned (j, width) array for g's compact channels-last rows as the weight gradient
    reads them (rows of ``_row`` values, or the tail's whole vectors, zeroed past o)."""
    full, r = _split_out(o, np.dtype(dt).itemsize)
    rows = _aligned((j, _row(o, np.dtype(dt).itemsize) if not r else full + r), dt)
    if r:
        rows[:, o:] = 0
    return rows


# the layout (``conv_direct_cl_layout``), the weight gradient and g's shared rows
# (``conv_direct_cl_wgrad``); they read this module's switches and helpers at call time
from .conv_direct_cl_layout import (  # noqa: E402, F401
    ClCols,
    _copy,
    _frame_table,
    _layout_kernels,
    _padded_buffer,
    to_channels_last,
)
from .conv_direct_cl_wgrad import (  # noqa: E402, F401
    direct_cl_weight_grad,
    share_g,
    use_direct_cl_weight_grad,
)
