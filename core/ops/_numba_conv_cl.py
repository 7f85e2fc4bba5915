"""Compiled (numba) channels-last direct convolution: register-blocked micro-kernels that
vectorise over output channels (``conv_direct_cl`` prepares the layout).

``conv_direct``'s kernels vectorise over output positions, over wide rows of the padded width:
on small planes (8^2, 7^2) those rows compute 1.3-1.5x the outputs. Here the vectors run along
the output channels (``CL_VEC_BYTES``: V = 64 float32 / 32 float64, four zmm registers) and
the positions' input values are broadcast from a channels-last input; a position is any
entry of a table (``pos``), so no plane size or stride wastes work.

- ``forward_cl(xh, wk, offs, pos, cb, o, y)``: ``y[j, o] = sum_t,c xh[pos[j] + offs[t] + c]
  * wk[o // V, t, c, o % V]``; a call computes ``CL_P`` positions x V output channels
  (``CL_P`` x 4 zmm accumulators) over all taps and a block of input channels: a (tap,
  channel) step costs 4 vector loads, ``CL_P`` broadcasts and 4 x ``CL_P`` FMAs.
- ``weight_grad_cl(xh, gcl, offs, pos, j, o, dwt)``: ``dwt[c, t, o] = sum_j xh[pos[j] +
  offs[t] + c] * gcl[j, o]``; a call computes ``CL_P`` input channels x V output channels
  over a block of positions (g's vectors loaded, x's values broadcast).
- ``weight_layout`` / ``transpose2d``: the weight's re-layout and dw's transpose back, as
  compiled loops (NumPy's transposing copies took 2-4x as long).

The micro-kernels are made by ``make_fwd_micro`` / ``make_wgrad_micro`` for a vector width and
a count of positions (input channels) a call; ``_numba_conv_cl_tail`` makes narrower ones for
the output channels past the last whole vector.

Arrays are C-contiguous, float32 or float64, of one dtype. ``AVAILABLE`` is False without
numba (``conv_direct_cl`` then keeps the other paths). The kernels are ``cache=True``.
"""

from __future__ import annotations

import functools

import numpy as np

from .conv_direct_cl import CL_P, CL_VEC_BYTES

try:
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # numba is optional
    njit = None

AVAILABLE = njit is not None
CHUNK = 64  # position blocks (of CL_P) a chunk of the forward: outputs kept in L2
# weight gradient: positions a block, g's block (32 KB) and the block's input rows near L1
# (1 thread, ms, weight gradient of 128->256 s2 on 16 x 28^2: 512 19.6, 128 17.5)
JBLOCK = 128
PAR_CHUNK = 16  # position blocks a task of the parallel forward
# tasks of the parallel weight gradient, at least (where there are enough input-channel blocks;
# session 25: 64->64 k3 on 8 x 16^2 from 9 tasks to 18)
WGRAD_PAR_TASKS = 16


def _jit(fn):
    return njit(cache=True, nogil=True, error_model="numpy")(fn)


if AVAILABLE:
    from ._numba_conv_direct import _broadcast, _ptr, _vec
    from ._numba_transpose import t16, t16_table

    def make_fwd_micro(vec_bytes: int, npos: int):
        """The forward micro-kernel for vectors of ``vec_bytes`` and ``npos`` positions a
        call (``_fwd_cl_micro``: 256 bytes, ``CL_P``; ``_numba_conv_cl_tail``: the last
        output channels). numba's cache keys on the calling kernel's file: after changing
        this, touch _numba_conv_cl_tail.py too."""

        @intrinsic
        def micro(typingctx, x, pos, pidx, c, cw, w, woff, offs, y, yoff, sy, acc0):
            sig = types.void(x, pos, pidx, c, cw, w, woff, offs, y, yoff, sy, acc0)
            return sig, functools.partial(_fwd_codegen, vec_bytes, npos)

        return micro

    def _fwd_codegen(vec_bytes, npos, context, builder, signature, args):
        """One call: ``npos`` positions (``x`` at ``pos[pidx + p]``) x one vector of output
        channels, reduced over all taps (``offs``) and ``c`` input channels; stores
        (overwrites) the outputs at ``y[yoff + p * sy]``, adds to them where ``acc0`` is not
        0 (a later block of input channels)."""
        xa, pa, pidx, c, cw, wa, woff, oa, ya, yoff, sy, acc0 = args
        a_ = signature.args
        xt, pt, wt, ot, yt_ = a_[0], a_[1], a_[5], a_[7], a_[8]
        fty, vty, width, name = _vec(context, xt.dtype, vec_bytes)
        i64 = ir.IntType(64)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3), name)
        xp, wp = _ptr(context, builder, xt, xa), _ptr(context, builder, wt, wa)
        pp = _ptr(context, builder, pt, pa)
        offs = context.make_array(ot)(context, builder, oa)
        op, nt = offs.data, builder.extract_value(offs.shape, 0)
        yp = _ptr(context, builder, yt_, ya)
        # allocas of vectors, only loaded and stored: promoted to registers by mem2reg
        ybase = builder.gep(yp, [yoff])
        pys = [
            builder.bitcast(
                builder.gep(ybase, [builder.mul(ir.Constant(i64, p), sy)]), vty.as_pointer()
            )
            for p in range(npos)
        ]
        accs = [cgutils.alloca_once(builder, vty) for _ in range(npos)]
        for a in accs:
            builder.store(ir.Constant(vty, None), a)
        with builder.if_then(builder.icmp_signed("!=", acc0, ir.Constant(acc0.type, 0))):
            for a, py in zip(accs, pys):  # a later block of input channels: add to y
                old = builder.load(py)
                old.align = width
                builder.store(old, a)
        xpos = [
            builder.gep(
                xp, [builder.load(builder.gep(pp, [builder.add(pidx, ir.Constant(i64, p))]))]
            )
            for p in range(npos)
        ]
        wbase = builder.gep(wp, [woff])
        nv = ir.Constant(i64, vty.count)
        wtap = builder.mul(cw, nv)
        with cgutils.for_range(builder, nt) as lt:
            off = builder.load(builder.gep(op, [lt.index]))
            wt_ = builder.gep(wbase, [builder.mul(lt.index, wtap)])
            xrows = [builder.gep(xpos[p], [off]) for p in range(npos)]
            with cgutils.for_range(builder, c) as lc:
                pw = builder.gep(wt_, [builder.mul(lc.index, nv)])
                wv = builder.load(builder.bitcast(pw, vty.as_pointer()))
                wv.align = width
                for p in range(npos):
                    xs = builder.load(builder.gep(xrows[p], [lc.index]))
                    acc = builder.load(accs[p])
                    builder.store(
                        builder.call(fma, [_broadcast(builder, vty, xs), wv, acc]), accs[p]
                    )
        for a, py in zip(accs, pys):
            st = builder.store(builder.load(a), py)
            st.align = width
        return context.get_dummy_value()

    def make_wgrad_micro(vec_bytes: int, npos: int):
        """The weight-gradient micro-kernel for vectors of ``vec_bytes`` and ``npos`` input
        channels a call (``_wgrad_cl_micro``: 256 bytes, ``CL_P``)."""

        @intrinsic
        def micro(typingctx, x, xoff, pos, j0, nj, g, sg, dw, dwoff, sdw, acc0):
            sig = types.void(x, xoff, pos, j0, nj, g, sg, dw, dwoff, sdw, acc0)
            return sig, functools.partial(_wgrad_codegen, vec_bytes, npos)

        return micro

    def _wgrad_codegen(vec_bytes, npos, context, builder, signature, args):
        """One call: dw for ``npos`` input channels (``x`` at ``xoff + pos[j] + i``) x one
        vector of output channels (``g`` at ``j * sg``), reduced over positions ``j0 .. j0 +
        nj``; stored at ``dw[dwoff + i * sdw]``, added to it where ``acc0`` is not 0."""
        xa, xoff, pa, j0, nj, ga, sg, da, dwoff, sdw, acc0 = args
        a_ = signature.args
        fty, vty, width, name = _vec(context, a_[0].dtype, vec_bytes)
        i64 = ir.IntType(64)
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty] * 3), name)
        xp = builder.gep(_ptr(context, builder, a_[0], xa), [xoff])
        pp = builder.gep(_ptr(context, builder, a_[2], pa), [j0])
        gp = builder.gep(_ptr(context, builder, a_[5], ga), [builder.mul(j0, sg)])
        dp = builder.gep(_ptr(context, builder, a_[7], da), [dwoff])
        pds = [
            builder.bitcast(
                builder.gep(dp, [builder.mul(ir.Constant(i64, i), sdw)]), vty.as_pointer()
            )
            for i in range(npos)
        ]
        accs = [cgutils.alloca_once(builder, vty) for _ in range(npos)]
        for a in accs:
            builder.store(ir.Constant(vty, None), a)
        with builder.if_then(builder.icmp_signed("!=", acc0, ir.Constant(acc0.type, 0))):
            for a, pd in zip(accs, pds):  # a later block of positions: add to dw
                old = builder.load(pd)
                old.align = width
                builder.store(old, a)
        with cgutils.for_range(builder, nj) as lj:
            xj = builder.gep(xp, [builder.load(builder.gep(pp, [lj.index]))])
            pg = builder.gep(gp, [builder.mul(lj.index, sg)])
            gv = builder.load(builder.bitcast(pg, vty.as_pointer()))
            gv.align = width
            for i in range(npos):
                xs = builder.load(builder.gep(xj, [ir.Constant(i64, i)]))
                acc = builder.load(accs[i])
                builder.store(builder.call(fma, [_broadcast(builder, vty, xs), gv, acc]), accs[i])
        for a, pd in zip(accs, pds):
            st = builder.store(builder.load(a), pd)
            st.align = width
        return context.get_dummy_value()

    _fwd_cl_micro = make_fwd_micro(CL_VEC_BYTES, CL_P)
    _wgrad_cl_micro = make_wgrad_micro(CL_VEC_BYTES, CL_P)

    @_jit
    def weight_grad_cl(xh, gcl, offs, pos, j_, o, dwt):  # pragma: no cover
        # xh channels-last padded input, flat, with CL_P spare values at its end; gcl
        # (J, >= O) g channels-last (J: the positions, without pos's padding; o: O); dwt
        # (Cp, T, >= O), Cp the input channels rounded up to CL_P (the caller drops the extra
        # rows); o: the output channels of whole vectors (a tail: ``_numba_conv_cl_tail``).
        # Positions in blocks of JBLOCK, so that g's block (JBLOCK x V) stays in cache while
        # every (tap, input channels) goes over it.
        sg = gcl.shape[1]
        cp, t_, sd = dwt.shape
        v = CL_VEC_BYTES // gcl.itemsize
        gflat, dflat = gcl.reshape(-1), dwt.reshape(-1)
        for ob in range(o // v):
            for j0 in range(0, j_, JBLOCK):
                nj = min(JBLOCK, j_ - j0)
                for t in range(t_):
                    for c0 in range(0, cp, CL_P):
                        _wgrad_cl_micro(
                            xh,
                            offs[t] + c0,
                            pos,
                            j0,
                            nj,
                            gflat[ob * v :],
                            sg,
                            dflat,
                            (c0 * t_ + t) * sd + ob * v,
                            t_ * sd,
                            j0,
                        )

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def weight_grad_cl_par(xh, gcl, offs, pos, j_, o, dwt):  # pragma: no cover
        # prange over (output-channel block, tap, group of input-channel blocks): each writes
        # its own vectors of dwt, in the serial kernel's order (the same bits). The groups
        # make at least WGRAD_PAR_TASKS tasks: (block, tap) alone gave 64->64 k3 nine, which
        # two threads share 5 : 4
        sg = gcl.shape[1]
        cp, t_, sd = dwt.shape
        v = CL_VEC_BYTES // gcl.itemsize
        gflat, dflat = gcl.reshape(-1), dwt.reshape(-1)
        nob = o // v
        ncb = cp // CL_P
        cs = min(ncb, max(1, -(-WGRAD_PAR_TASKS // (nob * t_))))
        for i in prange(nob * t_ * cs):
            ob = i // (t_ * cs)
            t = (i // cs) % t_
            k = i % cs
            cb0, cb1 = k * ncb // cs, (k + 1) * ncb // cs
            for j0 in range(0, j_, JBLOCK):
                nj = min(JBLOCK, j_ - j0)
                for cb in range(cb0, cb1):
                    c0 = cb * CL_P
                    _wgrad_cl_micro(
                        xh,
                        offs[t] + c0,
                        pos,
                        j0,
                        nj,
                        gflat[ob * v :],
                        sg,
                        dflat,
                        (c0 * t_ + t) * sd + ob * v,
                        t_ * sd,
                        j0,
                    )

    @_jit
    def _transpose_rows(a, out, i0):  # pragma: no cover
        # out[:, i0 .. i0 + 16] = a[i0 .. i0 + 16].T, whole tiles in vector registers
        r, c = a.shape
        af, of = a.reshape(-1), out.reshape(-1)
        for j0 in range(0, c, 16):
            if i0 + 16 <= r and j0 + 16 <= c:
                t16(af, i0 * c + j0, c, of, j0 * r + i0, r)
                continue
            for j in range(j0, min(j0 + 16, c)):
                for i in range(i0, min(i0 + 16, r)):
                    out[j, i] = a[i, j]

    @_jit
    def transpose2d(a, out):  # pragma: no cover
        # out = a.T in 16 x 16 tiles (``_numba_transpose``; NumPy's transposing copy of 1152 x
        # 128 float32: 0.17 ms)
        for i0 in range(0, a.shape[0], 16):
            _transpose_rows(a, out, i0)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def transpose2d_par(a, out):  # pragma: no cover
        # prange over a's blocks of 16 rows (2 threads, dw of 256 x 256 x 9: 0.2 ms serial)
        for k in prange(-(-a.shape[0] // 16)):
            _transpose_rows(a, out, k * 16)

    @_jit
    def fwd_blocks(  # pragma: no cover
        xh, wflat, offs, pos, cb, c, t, v, ob, b0, b1, yflat, yoff0, sy
    ):
        # position blocks b0 .. b1 x the ob-th vector of output channels, every block of cb
        # input channels (the first overwrites y, the later add to it); block b's outputs at
        # yflat[yoff0 + (b - b0) * CL_P * sy], rows sy apart
        for c0 in range(0, c, cb):
            cn = min(cb, c - c0)
            for b in range(b0, b1):
                _fwd_cl_micro(
                    xh[c0:],
                    pos,
                    b * CL_P,
                    cn,
                    c,
                    wflat,
                    (ob * t * c + c0) * v,
                    offs,
                    yflat,
                    yoff0 + (b - b0) * CL_P * sy,
                    sy,
                    c0,
                )

    @_jit
    def forward_cl(xh, wk, offs, pos, cb, o, y):  # pragma: no cover
        # xh channels-last padded input, flat; wk (O / V, T, C, V); pos (J,) each output
        # position's first input element, J a multiple of CL_P; y (J, >= O), o: O. Blocks
        # of cb input channels over a chunk of CHUNK position blocks: a block's weights
        # (T x cb x V) stay in L1 and the chunk's outputs in L2 while the partial sums over
        # the channel blocks are added up in y.
        j_, sy = y.shape
        nob, t, c, v = wk.shape
        wflat, yflat = wk.reshape(-1), y.reshape(-1)
        nb = j_ // CL_P
        for ob in range(nob):
            for b0 in range(0, nb, CHUNK):
                b1 = min(b0 + CHUNK, nb)
                yo = b0 * CL_P * sy + ob * v
                fwd_blocks(xh, wflat, offs, pos, cb, c, t, v, ob, b0, b1, yflat, yo, sy)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def forward_cl_par(xh, wk, offs, pos, cb, o, y):  # pragma: no cover
        # prange over (output-channel block, chunk of PAR_CHUNK position blocks)
        j_, sy = y.shape
        nob, t, c, v = wk.shape
        wflat, yflat = wk.reshape(-1), y.reshape(-1)
        nb = j_ // CL_P
        nch = -(-nb // PAR_CHUNK)
        for i in prange(nob * nch):
            ob = i // nch
            b0 = (i % nch) * PAR_CHUNK
            b1 = min(b0 + PAR_CHUNK, nb)
            yo = b0 * CL_P * sy + ob * v
            fwd_blocks(xh, wflat, offs, pos, cb, c, t, v, ob, b0, b1, yflat, yo, sy)

    @_jit
    def _layout_rows(w3, wk, tab, b, i0):  # pragma: no cover
        # wk[b, t, c, i0 .. i0 + 16] = w3[b * V + i0 .. + 16, c, t] for every (c, t): 16 x 16
        # tiles of w3's rows (O, C * T) transposed in registers, row (c, t) of a tile to its
        # place tab[c * T + t] in wk[b] (the rest of C * T value by value)
        o_, c_, t_ = w3.shape
        v = wk.shape[3]
        ct = c_ * t_
        wf, kf = w3.reshape(-1), wk.reshape(-1)
        fm = ct - ct % 16
        r0, d0 = (b * v + i0) * ct, b * t_ * c_ * v + i0
        for f0 in range(0, fm, 16):
            t16_table(wf, r0 + f0, ct, kf, d0, tab, f0)
        for f in range(fm, ct):
            c, t = f // t_, f % t_
            for i in range(16):
                wk[b, t, c, i0 + i] = w3[b * v + i0 + i, c, t]

    @_jit
    def _layout_table(c_, t_, v):  # pragma: no cover
        # the place of w3's column (c, t) in a block of wk: (t * C + c) * V
        tab = np.empty(c_ * t_, dtype=np.int64)
        for c in range(c_):
            for t in range(t_):
                tab[c * t_ + t] = (t * c_ + c) * v
        return tab

    @_jit
    def weight_layout(w3, flip, wk):  # pragma: no cover
        # w3 (O, C, T) -> wk (O / V, T, C, V): wk[ob, t, c, v] = w3[ob * V + v, c, t], in
        # tiles transposed in registers (``_layout_rows``; 256 x 256 x 9 float32: 0.31 ms as
        # loops that read w3 in cache-line order, NumPy's transposing copy 0.5); with
        # ``flip``, the transposed convolution's kernel (the stride-1 input gradient):
        # wk (C / V, T, O, V), wk[cb, t, o, v] = w3[o, cb * V + v, T - 1 - t], by those loops
        # (its runs of V values are strided by T in w3: no tile of whole rows)
        o_, c_, t_ = w3.shape
        nb, v = wk.shape[0], wk.shape[3]
        if flip:
            for b in range(nb):
                for o in range(o_):
                    for t in range(t_):
                        for i in range(v):
                            wk[b, t, o, i] = w3[o, b * v + i, t_ - 1 - t]
        else:
            tab = _layout_table(c_, t_, v)
            for b in range(nb):
                for i0 in range(0, v, 16):
                    _layout_rows(w3, wk, tab, b, i0)

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def weight_layout_par(w3, flip, wk):  # pragma: no cover
        # prange over w3's rows (flip) or (block, 16 lanes): each writes its own values of wk
        # (2 threads, 256 x 256 x 9: 0.5 ms a call serial, two calls a step)
        o_, c_, t_ = w3.shape
        nb, v = wk.shape[0], wk.shape[3]
        if flip:
            for o in prange(o_):
                for b in range(nb):
                    for t in range(t_):
                        for i in range(v):
                            wk[b, t, o, i] = w3[o, b * v + i, t_ - 1 - t]
        else:
            tab = _layout_table(c_, t_, v)
            nl = v // 16
            for k in prange(nb * nl):
                _layout_rows(w3, wk, tab, k // nl, (k % nl) * 16)
