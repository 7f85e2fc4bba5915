"""Compiled layout copies of the channels-last direct convolution (``conv_direct_cl``).

NumPy's transposing copies between (N, C, *S) and the channels-last rows (positions, C) run
~2.5 cycles a value on this machine (8 x 64 x 16^2 float32: 0.12 ms into the padded layout,
0.11 ms back). Here they go in tiles of 16 channels x 16 positions transposed in vector
registers (``_numba_transpose``; session 26: 2x the tiles' plain loops, which LLVM vectorised
on one side only); ragged edges (channels or positions not a multiple of 16) take a plain loop.
Into the padded layout, a tile's 16 positions may span rows of the frame (planes of any width:
7^2 and 8^2 planes had NumPy's copies before session 26).

- ``to_cl(x, tab, p, flat, crow, comp, ccrow)``: x (N, C, L) into the flat zero-padded
  channels-last buffer ``flat``: input position l of sample n (P = ``p`` positions a padded
  frame) holds its channels at ``n * P * crow + tab[l]`` (``tab``: each position's place in
  the frame, times ``crow``). The padding is not written (the caller zeroes ``flat``). Where
  ``comp`` is not empty, the same values also go to the compact rows ``comp`` ((n * L + l) *
  ccrow + c): g for the weight gradient, from the same pass.
- ``from_cl(y, sy, has_bias, bias, out)``: y's rows (positions, ``sy`` values a row) into out
  (N, O, L): ``out[n, o, l] = y[(n * L + l) * sy + o] (+ bias[o])``.

Both have ``_par`` variants (a prange over (sample, tile of 16 channels); ``conv_direct_cl``'s
``PAR_LAYOUT``) with the same tiles, for two or more kernel threads.

Arrays are C-contiguous and of one dtype (``tab`` int64); values are copied (and the bias
added) exactly, so results are bitwise those of the NumPy copies.
"""

from __future__ import annotations

from ._numba_conv_direct import AVAILABLE

TILE = 16  # channels x positions a tile (the constant trip counts below)

if AVAILABLE:
    from numba import njit, prange

    from ._numba_transpose import t16, t16_bias, t16_table

    @njit(cache=True, nogil=True, error_model="numpy")
    def _tile_to_cl(x, tab, p, flat, crow, comp, ccrow, n, c0):  # pragma: no cover
        # sample n's channels c0 .. c0 + TILE, every position: whole tiles of TILE positions
        # transposed in vector registers, each position to its place in the padded frame
        # (``tab``), the rest (fewer than TILE channels, the positions past the last whole
        # tile) value by value
        c, l_ = x.shape[1], x.shape[2]
        both = comp.shape[0] > 0
        cn = min(TILE, c - c0)
        xf = x.reshape(-1)
        lm = l_ - l_ % TILE if cn == TILE else 0
        dbase = n * p * crow + c0
        for l0 in range(0, lm, TILE):
            xo = (n * c + c0) * l_ + l0
            t16_table(xf, xo, l_, flat, dbase, tab, l0)
            if both:
                t16(xf, xo, l_, comp, (n * l_ + l0) * ccrow + c0, ccrow)
        for ll in range(lm, l_):
            q, cq = dbase + tab[ll], (n * l_ + ll) * ccrow + c0
            for cc in range(cn):
                flat[q + cc] = x[n, c0 + cc, ll]
            if both:
                for cc in range(cn):
                    comp[cq + cc] = x[n, c0 + cc, ll]

    @njit(cache=True, nogil=True, error_model="numpy")
    def to_cl(x, tab, p, flat, crow, comp, ccrow):  # pragma: no cover
        for n in range(x.shape[0]):
            for c0 in range(0, x.shape[1], TILE):
                _tile_to_cl(x, tab, p, flat, crow, comp, ccrow, n, c0)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def to_cl_par(x, tab, p, flat, crow, comp, ccrow):  # pragma: no cover
        # prange over (sample, tile of channels): each task writes its own values
        nc = -(-x.shape[1] // TILE)
        for i in prange(x.shape[0] * nc):
            _tile_to_cl(x, tab, p, flat, crow, comp, ccrow, i // nc, (i % nc) * TILE)

    @njit(cache=True, nogil=True, error_model="numpy")
    def _tile_from_cl(y, sy, has_bias, bias, out, n, o0):  # pragma: no cover
        # sample n's output channels o0 .. o0 + TILE, every position
        o, l_ = out.shape[1], out.shape[2]
        on = min(TILE, o - o0)
        of = out.reshape(-1)
        for l0 in range(0, l_, TILE):
            ln = min(TILE, l_ - l0)
            base = (n * l_ + l0) * sy + o0
            if on == TILE and ln == TILE:  # (in vector registers: _numba_transpose)
                if has_bias:
                    t16_bias(y, base, sy, of, (n * o + o0) * l_ + l0, l_, bias, o0)
                else:
                    t16(y, base, sy, of, (n * o + o0) * l_ + l0, l_)
            else:
                for oc in range(on):
                    for ll in range(ln):
                        v = y[base + ll * sy + oc]
                        out[n, o0 + oc, l0 + ll] = v + bias[o0 + oc] if has_bias else v

    @njit(cache=True, nogil=True, error_model="numpy")
    def from_cl(y, sy, has_bias, bias, out):  # pragma: no cover
        for n in range(out.shape[0]):
            for o0 in range(0, out.shape[1], TILE):
                _tile_from_cl(y, sy, has_bias, bias, out, n, o0)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def from_cl_par(y, sy, has_bias, bias, out):  # pragma: no cover
        # prange over (sample, tile of output channels): each task writes its own values
        no = -(-out.shape[1] // TILE)
        for i in prange(out.shape[0] * no):
            _tile_from_cl(y, sy, has_bias, bias, out, i // no, (i % no) * TILE)
