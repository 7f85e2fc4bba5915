"""Compiled (numba) channels-last direct convolution: the last output channels, where their
count is not a multiple of the 256-byte vector (issue 23, session 22).

``_numba_conv_cl``'s kernels hold 64 float32 (32 float64) output channels a vector, so 96,
160 or 48 output channels kept the wide-row direct kernels or im2col + GEMM. Here the
channels past the last whole vector (the tail, rounded up to 64 bytes: 16, 32 or 48 float32)
run with vectors of 1 or 2 zmm registers (a tail of 48 as 32 + 16: a 3-zmm vector type,
<48 x float>, compiled to code 10x slower), with 12 positions a call so that the
accumulators still fill the register file (``TAIL_POS``).

- ``forward_cl_tail(xh, wt, offs, pos, cb, y, yoff)``: ``y[j, yoff + i] = sum_t,c
  xh[pos[j] + offs[t] + c] * wt[t, c, i]``, the tail's weights laid out (T, C, R), R lanes
  of 64 or 128 bytes;
- ``weight_grad_cl_tail(xh, gcl, goff, offs, pos, j, dwt, doff)``: ``dwt[c, t, doff + i] =
  sum_j xh[pos[j] + offs[t] + c] * gcl[j, goff + i]``, ``CL_P`` input channels a call.

Both have ``_par`` variants (prange over chunks of positions / over taps). The position
table (``conv_direct_cl._plan_of``) is padded to a multiple of ``POS_ALIGN``, which every
kernel's positions a call divide. The kernels are ``cache=True``; they compile (or load) only
when a convolution with such a tail first runs.
"""

from __future__ import annotations

from .conv_direct_cl import CL_P

try:
    from numba import njit, prange
except ImportError:  # numba is optional
    njit = None

AVAILABLE = njit is not None
TAIL_POS = (12, 12)  # positions a forward call, for tails of 1 and 2 x 64 bytes
CHUNK_POS = 384  # positions a chunk of the forward (outputs kept in L2, as _numba_conv_cl)
PAR_CHUNK_POS = 96  # positions a task of the parallel forward
JBLOCK = 128  # positions a block of the weight gradient (as _numba_conv_cl)


def _jit(fn):
    return njit(cache=True, nogil=True, error_model="numpy")(fn)


if AVAILABLE:
    from ._numba_conv_cl import make_fwd_micro, make_wgrad_micro

    _fwd1 = make_fwd_micro(64, TAIL_POS[0])
    _fwd2 = make_fwd_micro(128, TAIL_POS[1])
    _wg1 = make_wgrad_micro(64, CL_P)
    _wg2 = make_wgrad_micro(128, CL_P)

    @_jit
    def _fwd_block(xh, pos, j0, cn, c, wflat, woff, offs, yflat, yo, sy, acc0, nv):
        # one micro-kernel call of the tail's width (nv x 64 bytes)
        if nv == 1:
            _fwd1(xh, pos, j0, cn, c, wflat, woff, offs, yflat, yo, sy, acc0)
        else:
            _fwd2(xh, pos, j0, cn, c, wflat, woff, offs, yflat, yo, sy, acc0)

    @_jit
    def _fwd_range(xh, pos, c, cb, r, wflat, offs, yflat, sy, yoff, nv, j0, j1):
        # positions j0..j1 of the tail's forward, in blocks of cb input channels
        p = TAIL_POS[nv - 1]
        for c0 in range(0, c, cb):
            cn = min(cb, c - c0)
            for j in range(j0, j1, p):
                _fwd_block(
                    xh[c0:], pos, j, cn, c, wflat, c0 * r, offs, yflat, j * sy + yoff, sy, c0, nv
                )

    @_jit
    def forward_cl_tail(xh, wt, offs, pos, cb, y, yoff):  # pragma: no cover
        # xh the channels-last padded input, flat; wt (T, C, R) the tail's weights; pos (J,),
        # J a multiple of every TAIL_POS; y (J, >= yoff + R). Blocks of cb input channels over
        # chunks of positions, as _numba_conv_cl.forward_cl.
        j_, sy = y.shape
        t, c, r = wt.shape
        nv = r * wt.itemsize // 64
        wflat, yflat = wt.reshape(-1), y.reshape(-1)
        for j0 in range(0, j_, CHUNK_POS):
            j1 = min(j0 + CHUNK_POS, j_)
            _fwd_range(xh, pos, c, cb, r, wflat, offs, yflat, sy, yoff, nv, j0, j1)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def forward_cl_tail_par(xh, wt, offs, pos, cb, y, yoff):  # pragma: no cover
        # prange over chunks of PAR_CHUNK_POS positions
        j_, sy = y.shape
        t, c, r = wt.shape
        nv = r * wt.itemsize // 64
        wflat, yflat = wt.reshape(-1), y.reshape(-1)
        nch = -(-j_ // PAR_CHUNK_POS)
        for i in prange(nch):
            j0 = i * PAR_CHUNK_POS
            j1 = min(j0 + PAR_CHUNK_POS, j_)
            _fwd_range(xh, pos, c, cb, r, wflat, offs, yflat, sy, yoff, nv, j0, j1)

    @_jit
    def _wg_block(xh, xoff, pos, j0, nj, gflat, sg, dflat, dwoff, sdw, acc0, nv):
        # one weight-gradient micro-kernel call of the tail's width (nv x 64 bytes)
        if nv == 1:
            _wg1(xh, xoff, pos, j0, nj, gflat, sg, dflat, dwoff, sdw, acc0)
        else:
            _wg2(xh, xoff, pos, j0, nj, gflat, sg, dflat, dwoff, sdw, acc0)

    @_jit
    def _wg_tap(xh, offs, t, pos, j0, nj, gflat, sg, dflat, cp, t_, sd, doff, nv):
        # tap t over positions j0..j0+nj, every CL_P input channels: its own vectors of dwt
        for c0 in range(0, cp, CL_P):
            dwoff = (c0 * t_ + t) * sd + doff
            _wg_block(xh, offs[t] + c0, pos, j0, nj, gflat, sg, dflat, dwoff, t_ * sd, j0, nv)

    @_jit
    def weight_grad_cl_tail(xh, gcl, goff, r, offs, pos, j_, dwt, doff):  # pragma: no cover
        # gcl (J, >= goff + R) g channels-last; dwt (Cp, T, >= doff + R), Cp a multiple of
        # CL_P; r: R, the tail's lanes (a multiple of 64 bytes).
        sg = gcl.shape[1]
        cp, t_, sd = dwt.shape
        nv = r * gcl.itemsize // 64
        gflat, dflat = gcl.reshape(-1)[goff:], dwt.reshape(-1)
        for j0 in range(0, j_, JBLOCK):
            nj = min(JBLOCK, j_ - j0)
            for t in range(t_):
                _wg_tap(xh, offs, t, pos, j0, nj, gflat, sg, dflat, cp, t_, sd, doff, nv)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def weight_grad_cl_tail_par(xh, gcl, goff, r, offs, pos, j_, dwt, doff):  # pragma: no cover
        # prange over taps: each writes its own vectors of dwt
        sg = gcl.shape[1]
        cp, t_, sd = dwt.shape
        nv = r * gcl.itemsize // 64
        gflat, dflat = gcl.reshape(-1)[goff:], dwt.reshape(-1)
        for t in prange(t_):
            for j0 in range(0, j_, JBLOCK):
                nj = min(JBLOCK, j_ - j0)
                _wg_tap(xh, offs, t, pos, j0, nj, gflat, sg, dflat, cp, t_, sd, doff, nv)
