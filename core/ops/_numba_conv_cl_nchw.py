"""Compiled (numba) channels-last direct convolution whose outputs come back channels-first
as they are computed (issue 23, session 26).

``_numba_conv_cl.forward_cl`` writes every output into a (positions, O) buffer, and
``_numba_conv_layout.from_cl`` then copies that buffer into (N, O, L) with the bias: a second
pass over the outputs, from memory, and a buffer the size of the output allocated (and
page-faulted) each call. Here each chunk of positions x one vector of output channels is
computed into a small scratch block (``CHUNK`` x ``CL_P`` rows of V values, in L2) and copied
from it into (N, O, L), bias added, before the next chunk: the same micro-kernel calls in the
same order, the same copy tiles, so the same bits as ``forward_cl`` + ``from_cl``.

- ``forward_cl_nchw(xh, wk, offs, pos, cb, jr, ys, has_bias, bias, out)``: as ``forward_cl``
  for output channels in whole vectors (``wk`` (O / V, T, C, V)); ``jr`` the real positions
  (N * L; ``pos`` covers a multiple of ``CL_P`` at least that); ``ys`` the scratch (CHUNK *
  CL_P, V); ``out`` (N, O, L).
- ``forward_cl_nchw_par``: a prange over (vector of output channels, ``PAR_CHUNK`` position
  blocks), each task with its own scratch.

Arrays are C-contiguous, float32 or float64, of one dtype. The kernels are ``cache=True``.
"""

from __future__ import annotations

from ._numba_conv_cl import AVAILABLE, CHUNK, PAR_CHUNK
from ._numba_conv_layout import TILE
from .conv_direct_cl import CL_P

if AVAILABLE:
    import numpy as np
    from numba import njit, prange

    from ._numba_conv_cl import fwd_blocks
    from ._numba_transpose import t16, t16_bias

    @njit(cache=True, nogil=True, error_model="numpy")
    def _store(ys, j0, j1, oc0, has_bias, bias, out):  # pragma: no cover
        # ys's rows 0 .. j1 - j0 (positions j0 .. j1, V channels from oc0) into out (N, O, L)
        # as ``_numba_conv_layout._tile_from_cl`` copies them: tiles of TILE channels x TILE
        # positions of one sample, the bias added as the values move
        v = ys.shape[1]
        o_, l_ = out.shape[1], out.shape[2]
        yf, of = ys.reshape(-1), out.reshape(-1)
        j = j0
        while j < j1:
            n = j // l_
            l0 = j - n * l_
            seg = min(j1 - j, l_ - l0)
            r0 = j - j0
            for c0 in range(0, v, TILE):
                t0 = 0
                while t0 + TILE <= seg:  # (in vector registers: _numba_transpose)
                    src, dst = (r0 + t0) * v + c0, (n * o_ + oc0 + c0) * l_ + l0 + t0
                    if has_bias:
                        t16_bias(yf, src, v, of, dst, l_, bias, oc0 + c0)
                    else:
                        t16(yf, src, v, of, dst, l_)
                    t0 += TILE
                for cc in range(TILE):
                    for tt in range(t0, seg):
                        val = ys[r0 + tt, c0 + cc]
                        out[n, oc0 + c0 + cc, l0 + tt] = (
                            val + bias[oc0 + c0 + cc] if has_bias else val
                        )
            j += seg

    @njit(cache=True, nogil=True, error_model="numpy")
    def _chunk(
        xh, wflat, offs, pos, cb, c, t, ob, b0, b1, ys, jr, has_bias, bias, out
    ):  # pragma: no cover
        # position blocks b0 .. b1 x the ob-th vector of output channels: every block of cb
        # input channels into ys (the first overwrites, the later add), then ys into out
        v = ys.shape[1]
        fwd_blocks(xh, wflat, offs, pos, cb, c, t, v, ob, b0, b1, ys.reshape(-1), 0, v)
        _store(ys, b0 * CL_P, min(b1 * CL_P, jr), ob * v, has_bias, bias, out)

    @njit(cache=True, nogil=True, error_model="numpy")
    def forward_cl_nchw(xh, wk, offs, pos, cb, jr, ys, has_bias, bias, out):  # pragma: no cover
        nob, t, c, v = wk.shape
        wflat = wk.reshape(-1)
        nb = pos.shape[0] // CL_P
        for ob in range(nob):
            for b0 in range(0, nb, CHUNK):
                b1 = min(b0 + CHUNK, nb)
                _chunk(xh, wflat, offs, pos, cb, c, t, ob, b0, b1, ys, jr, has_bias, bias, out)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def forward_cl_nchw_par(xh, wk, offs, pos, cb, jr, ys, has_bias, bias, out):  # pragma: no cover
        # ys is not used: each task allocates its own scratch of PAR_CHUNK blocks
        nob, t, c, v = wk.shape
        wflat = wk.reshape(-1)
        nb = pos.shape[0] // CL_P
        nch = -(-nb // PAR_CHUNK)
        for i in prange(nob * nch):
            ob = i // nch
            b0 = (i % nch) * PAR_CHUNK
            b1 = min(b0 + PAR_CHUNK, nb)
            s = np.empty((PAR_CHUNK * CL_P, v), dtype=ys.dtype)
            _chunk(xh, wflat, offs, pos, cb, c, t, ob, b0, b1, s, jr, has_bias, bias, out)
