"""Compiled (numba) direct convolution: register-blocked micro-kernels (any stride: the caller
lays a strided input out as its stride phases, ``conv_direct._plan``).

Plain numba loops do not give a register-blocked kernel: with ``fastmath`` LLVM's loop
vectoriser turns the tap loop into 64 vector reductions that spill, without it the SLP
vectoriser leaves 64 scalar accumulators scalar (16->16 on 8 x 32^2, k3, forward: 9.5 ms
against the GEMM path's 1.1; issue 23, session 18). The micro-kernels are therefore written
as LLVM IR (numba ``intrinsic``): the accumulators are vectors of 128 bytes (32 float32 or 16
float64, two zmm registers), kept in registers across the whole reduction.

Layout (``conv_direct`` prepares it): the zero-padded input of one sample is flat per channel,
``xf (N, C, P)``; one "plane" of the output (all of 2-D, one depth slice of 3-D) is computed
over wide rows (the padded width) as ``qpad`` flat positions, a tap being a fixed offset into
xf. Outputs in the padded columns are cropped by the caller; in the weight gradient they meet
zeros of g.

- ``forward(xf, wk, offs, plane_step, y)``: ``y[n, o, pl, q] = sum_c,t wk[o // 8, c, t, o % 8]
  * xf[n, c, pl * plane_step + q + offs[t]]``; 8 output channels x 128 bytes of outputs a
  micro-kernel call (16 vector accumulators; a tap costs 2 vector loads, 8 broadcasts and 16
  FMAs).
- ``weight_grad_cl(xcl, gw, offs3, plane_step, dwv)``: ``dw[o, c, t] = sum_n,pl,q
  gw[n, o, pl, q] * xcl[n, pl * plane_step + q + offs[t], c]`` from the channels-last input,
  into ``dwv (O, T3, C)``; 8 output channels x 3 taps x 64 bytes of input channels a call (24
  vector accumulators, g's values broadcast: 3 loads + 8 broadcasts per 24 FMAs).
- ``weight_grad(xf, gw, offs3, plane_step, dwp)``: the same sum from ``xf`` with vectors along
  the positions, into ``dwp (O, C, T3, lanes)`` whose lanes the caller sums; for channel
  counts that are not a multiple of the vector.
  ``offs3`` is padded to a multiple of 3 taps; the caller drops the padded taps.

The blocking constants (OB, TB, WOB, VEC_BYTES, GVEC_BYTES) live in ``conv_direct``.

Arrays are C-contiguous, float32 or float64, of one dtype. ``AVAILABLE`` is False without
numba (``conv_direct`` then keeps the GEMM paths).
"""

from __future__ import annotations

from .conv_direct import GVEC_BYTES, OB, TB, VEC_BYTES, WOB

try:
    from llvmlite import ir
    from numba import njit, prange, types
    from numba.core import cgutils
    from numba.extending import intrinsic
except ImportError:  # numba is optional
    njit = None

AVAILABLE = njit is not None
QBLOCK = 256  # weight gradient: positions a block


def _jit(fn):
    return njit(cache=True, nogil=True, error_model="numpy")(fn)


def _ptr(context, builder, ty, val):
    return context.make_array(ty)(context, builder, val).data


def _broadcast(builder, vty, scalar):
    undef = ir.Constant(vty, ir.Undefined)
    zero = ir.Constant(ir.VectorType(ir.IntType(32), vty.count), [0] * vty.count)
    return builder.shuffle_vector(
        builder.insert_element(undef, scalar, ir.Constant(ir.IntType(32), 0)), undef, zero
    )


def _vec(context, dtype, nbytes):
    fty = context.get_data_type(dtype)
    width = 4 if isinstance(fty, ir.FloatType) else 8
    vty = ir.VectorType(fty, nbytes // width)
    name = f"llvm.fma.v{vty.count}{'f32' if width == 4 else 'f64'}"
    return fty, vty, width, name


if AVAILABLE:

    @intrinsic
    def _fwd_micro(typingctx, x, xoff, cstride, w, woff, nc, offs, y, yoff, ystride):
        """One call: 8 output channels x VEC_BYTES of outputs, reduced over nc channels and
        all taps; stores (overwrites) the outputs."""
        sig = types.void(x, xoff, cstride, w, woff, nc, offs, y, yoff, ystride)

        def codegen(context, builder, signature, args):
            xa, xoff, cstride, wa, woff, nc, oa, ya, yoff, ystride = args
            a_ = signature.args
            xt, wt, ot, yt_ = a_[0], a_[3], a_[6], a_[7]
            fty, vty, width, name = _vec(context, xt.dtype, VEC_BYTES)
            i64 = ir.IntType(64)
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty] * 3), name
            )
            xp, wp = _ptr(context, builder, xt, xa), _ptr(context, builder, wt, wa)
            offs = context.make_array(ot)(context, builder, oa)
            op, nt = offs.data, builder.extract_value(offs.shape, 0)
            yp = _ptr(context, builder, yt_, ya)
            # allocas of vectors, only loaded and stored: promoted to registers by mem2reg
            accs = [cgutils.alloca_once(builder, vty) for _ in range(OB)]
            for a in accs:
                builder.store(ir.Constant(vty, None), a)
            xbase, wbase = builder.gep(xp, [xoff]), builder.gep(wp, [woff])
            wrow = builder.mul(nt, ir.Constant(i64, OB))
            with cgutils.for_range(builder, nc) as lc:
                xc = builder.gep(xbase, [builder.mul(lc.index, cstride)])
                wc = builder.gep(wbase, [builder.mul(lc.index, wrow)])
                with cgutils.for_range(builder, nt) as lt:
                    off = builder.load(builder.gep(op, [lt.index]))
                    px = builder.bitcast(builder.gep(xc, [off]), vty.as_pointer())
                    xv = builder.load(px)
                    xv.align = width
                    wtap = builder.gep(wc, [builder.mul(lt.index, ir.Constant(i64, OB))])
                    for o in range(OB):
                        ws = builder.load(builder.gep(wtap, [ir.Constant(i64, o)]))
                        acc = builder.load(accs[o])
                        builder.store(
                            builder.call(fma, [_broadcast(builder, vty, ws), xv, acc]), accs[o]
                        )
            ybase = builder.gep(yp, [yoff])
            for o in range(OB):
                py = builder.gep(ybase, [builder.mul(ir.Constant(i64, o), ystride)])
                st = builder.store(builder.load(accs[o]), builder.bitcast(py, vty.as_pointer()))
                st.align = width
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def _wgrad_micro(typingctx, x, xoff, g, goff, gstride, offs, toff, nq, dwp, dwpoff, dwps):
        """One call: 8 output channels x 3 taps of one input channel over ``nq`` vectors of
        positions; the vector sums are added into ``dwp`` (lanes summed by the caller)."""
        sig = types.void(x, xoff, g, goff, gstride, offs, toff, nq, dwp, dwpoff, dwps)

        def codegen(context, builder, signature, args):
            xa, xoff, ga, goff, gstride, oa, toff, nq, da, dwpoff, dwps = args
            st_ = signature.args
            fty, vty, width, name = _vec(context, st_[0].dtype, GVEC_BYTES)
            i64 = ir.IntType(64)
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty] * 3), name
            )
            xp, gp = _ptr(context, builder, st_[0], xa), _ptr(context, builder, st_[2], ga)
            op, dp = _ptr(context, builder, st_[5], oa), _ptr(context, builder, st_[8], da)
            accs = [[cgutils.alloca_once(builder, vty) for _ in range(TB)] for _ in range(WOB)]
            for row in accs:
                for a in row:
                    builder.store(ir.Constant(vty, None), a)
            offs = [
                builder.load(builder.gep(op, [builder.add(toff, ir.Constant(i64, t))]))
                for t in range(TB)
            ]
            xb, gb = builder.gep(xp, [xoff]), builder.gep(gp, [goff])
            with cgutils.for_range(builder, nq) as lq:
                q = builder.mul(lq.index, ir.Constant(i64, vty.count))
                xs = []
                for t in range(TB):
                    px = builder.gep(xb, [builder.add(q, offs[t])])
                    v = builder.load(builder.bitcast(px, vty.as_pointer()))
                    v.align = width
                    xs.append(v)
                for o in range(WOB):
                    pg = builder.gep(
                        gb, [builder.add(q, builder.mul(ir.Constant(i64, o), gstride))]
                    )
                    gv = builder.load(builder.bitcast(pg, vty.as_pointer()))
                    gv.align = width
                    for t in range(TB):
                        acc = builder.load(accs[o][t])
                        builder.store(builder.call(fma, [gv, xs[t], acc]), accs[o][t])
            db = builder.gep(dp, [dwpoff])
            for o in range(WOB):
                for t in range(TB):
                    off = builder.add(
                        builder.mul(ir.Constant(i64, o), dwps), ir.Constant(i64, t * vty.count)
                    )
                    pd = builder.bitcast(builder.gep(db, [off]), vty.as_pointer())
                    old = builder.load(pd)
                    old.align = width
                    st = builder.store(builder.fadd(old, builder.load(accs[o][t])), pd)
                    st.align = width
            return context.get_dummy_value()

        return sig, codegen

    @intrinsic
    def _wgrad_cl_micro(typingctx, x, xoff, c, g, goff, gstride, offs, toff, nq, dwv, dwoff, dws):
        """One call: dw for 8 output channels x 3 taps x one vector of input channels, from
        the channels-last input ``x`` (positions x c) and g's scalars broadcast, over ``nq``
        positions; added into ``dwv`` (O, T3, C)."""
        sig = types.void(x, xoff, c, g, goff, gstride, offs, toff, nq, dwv, dwoff, dws)

        def codegen(context, builder, signature, args):
            xa, xoff, c, ga, goff, gstride, oa, toff, nq, da, dwoff, dws = args
            st_ = signature.args
            fty, vty, width, name = _vec(context, st_[0].dtype, GVEC_BYTES)
            i64 = ir.IntType(64)
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty] * 3), name
            )
            xp, gp = _ptr(context, builder, st_[0], xa), _ptr(context, builder, st_[3], ga)
            op, dp = _ptr(context, builder, st_[6], oa), _ptr(context, builder, st_[9], da)
            accs = [[cgutils.alloca_once(builder, vty) for _ in range(TB)] for _ in range(WOB)]
            for row in accs:
                for a in row:
                    builder.store(ir.Constant(vty, None), a)
            xb, gb = builder.gep(xp, [xoff]), builder.gep(gp, [goff])
            xts = []
            for t in range(TB):
                off = builder.load(builder.gep(op, [builder.add(toff, ir.Constant(i64, t))]))
                xts.append(builder.gep(xb, [builder.mul(off, c)]))
            with cgutils.for_range(builder, nq) as lq:
                i = lq.index
                row = builder.mul(i, c)
                xs = []
                for t in range(TB):
                    v = builder.load(builder.bitcast(builder.gep(xts[t], [row]), vty.as_pointer()))
                    v.align = width
                    xs.append(v)
                for o in range(WOB):
                    pg = builder.gep(
                        gb, [builder.add(i, builder.mul(ir.Constant(i64, o), gstride))]
                    )
                    gv = _broadcast(builder, vty, builder.load(pg))
                    for t in range(TB):
                        acc = builder.load(accs[o][t])
                        builder.store(builder.call(fma, [gv, xs[t], acc]), accs[o][t])
            db = builder.gep(dp, [dwoff])
            for o in range(WOB):
                for t in range(TB):
                    off = builder.add(
                        builder.mul(ir.Constant(i64, o), dws), builder.mul(ir.Constant(i64, t), c)
                    )
                    pd = builder.bitcast(builder.gep(db, [off]), vty.as_pointer())
                    old = builder.load(pd)
                    old.align = width
                    st = builder.store(builder.fadd(old, builder.load(accs[o][t])), pd)
                    st.align = width
            return context.get_dummy_value()

        return sig, codegen

    @_jit
    def forward(xf, wk, offs, plane_step, y):  # pragma: no cover
        # xf (N, C, P); wk (O / OB, C, T, OB); y (N, O, npl, qpad), qpad a multiple of the vector
        n_, npl, qpad = y.shape[0], y.shape[2], y.shape[3]
        nob, c, p, o = wk.shape[0], xf.shape[1], xf.shape[2], y.shape[1]
        t = wk.shape[2]
        jb = VEC_BYTES // xf.itemsize
        xflat, wflat, yflat = xf.reshape(-1), wk.reshape(-1), y.reshape(-1)
        ystride = npl * qpad
        for n in range(n_):
            for ob in range(nob):
                for pl in range(npl):
                    for j0 in range(0, qpad, jb):
                        _fwd_micro(
                            xflat,
                            n * c * p + pl * plane_step + j0,
                            p,
                            wflat,
                            ob * c * t * OB,
                            c,
                            offs,
                            yflat,
                            (n * o + ob * OB) * ystride + pl * qpad + j0,
                            ystride,
                        )

    @_jit
    def weight_grad(xf, gw, offs3, plane_step, dwp):  # pragma: no cover
        # xf (N, C, P); gw (N, O, npl, qpad); offs3 (T3,); dwp (O, C, T3, V) zeroed by the
        # caller, V = 64 bytes of lanes. Positions in blocks of QBLOCK, so that g's block (8
        # channels) stays in L1 while every input channel and tap goes over it.
        n_, o, npl, qpad = gw.shape
        c, p, t3, v = xf.shape[1], xf.shape[2], offs3.shape[0], dwp.shape[3]
        xflat, gflat, dflat = xf.reshape(-1), gw.reshape(-1), dwp.reshape(-1)
        gstride = npl * qpad
        for n in range(n_):
            for ob in range(o // WOB):
                for pl in range(npl):
                    for q0 in range(0, qpad, QBLOCK):
                        nq = (min(QBLOCK, qpad - q0)) // v
                        goff = (n * o + ob * WOB) * gstride + pl * qpad + q0
                        for ch in range(c):
                            xoff = (n * c + ch) * p + pl * plane_step + q0
                            for t0 in range(0, t3, TB):
                                _wgrad_micro(
                                    xflat,
                                    xoff,
                                    gflat,
                                    goff,
                                    gstride,
                                    offs3,
                                    t0,
                                    nq,
                                    dflat,
                                    ((ob * WOB * c + ch) * t3 + t0) * v,
                                    c * t3 * v,
                                )

    @_jit
    def weight_grad_cl(xcl, gw, offs3, plane_step, dwv):  # pragma: no cover
        # xcl (N, P, C) channels-last, C a multiple of the vector; gw (N, O, npl, qpad);
        # offs3 (T3,); dwv (O, T3, C) zeroed by the caller
        n_, o, npl, qpad = gw.shape
        p, c, t3 = xcl.shape[1], xcl.shape[2], offs3.shape[0]
        v = GVEC_BYTES // xcl.itemsize
        xflat, gflat, dflat = xcl.reshape(-1), gw.reshape(-1), dwv.reshape(-1)
        gstride = npl * qpad
        for n in range(n_):
            for ob in range(o // WOB):
                for pl in range(npl):
                    goff = (n * o + ob * WOB) * gstride + pl * qpad
                    for c0 in range(0, c, v):
                        xoff = (n * p + pl * plane_step) * c + c0
                        for t0 in range(0, t3, TB):
                            _wgrad_cl_micro(
                                xflat,
                                xoff,
                                c,
                                gflat,
                                goff,
                                gstride,
                                offs3,
                                t0,
                                qpad,
                                dflat,
                                (ob * WOB * t3 + t0) * c + c0,
                                t3 * c,
                            )

    # Two or more threads (``conv_direct.THREADED``): the same loops with the outer one a
    # ``prange`` -- the forward over (sample, 8 output channels), the weight gradients over
    # blocks of 8 output channels (each writes its own rows of dw: no reduction across
    # threads). numba's pool keeps its threads ready, where a hand-off to ember's Python
    # pool per call did not get the second core on a loaded machine (docs/kernels.md).

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def forward_par(xf, wk, offs, plane_step, y):  # pragma: no cover
        n_, npl, qpad = y.shape[0], y.shape[2], y.shape[3]
        nob, c, p, o = wk.shape[0], xf.shape[1], xf.shape[2], y.shape[1]
        t = wk.shape[2]
        jb = VEC_BYTES // xf.itemsize
        xflat, wflat, yflat = xf.reshape(-1), wk.reshape(-1), y.reshape(-1)
        ystride = npl * qpad
        for i in prange(n_ * nob):
            n = i // nob
            ob = i % nob
            for pl in range(npl):
                for j0 in range(0, qpad, jb):
                    _fwd_micro(
                        xflat,
                        n * c * p + pl * plane_step + j0,
                        p,
                        wflat,
                        ob * c * t * OB,
                        c,
                        offs,
                        yflat,
                        (n * o + ob * OB) * ystride + pl * qpad + j0,
                        ystride,
                    )

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def weight_grad_cl_par(xcl, gw, offs3, plane_step, dwv):  # pragma: no cover
        n_, o, npl, qpad = gw.shape
        p, c, t3 = xcl.shape[1], xcl.shape[2], offs3.shape[0]
        v = GVEC_BYTES // xcl.itemsize
        xflat, gflat, dflat = xcl.reshape(-1), gw.reshape(-1), dwv.reshape(-1)
        gstride = npl * qpad
        for ob in prange(o // WOB):
            for n in range(n_):
                for pl in range(npl):
                    goff = (n * o + ob * WOB) * gstride + pl * qpad
                    for c0 in range(0, c, v):
                        xoff = (n * p + pl * plane_step) * c + c0
                        for t0 in range(0, t3, TB):
                            _wgrad_cl_micro(
                                xflat,
                                xoff,
                                c,
                                gflat,
                                goff,
                                gstride,
                                offs3,
                                t0,
                                qpad,
                                dflat,
                                (ob * WOB * t3 + t0) * c + c0,
                                t3 * c,
                            )

    @njit(parallel=True, cache=True, nogil=True, error_model="numpy")
    def weight_grad_par(xf, gw, offs3, plane_step, dwp):  # pragma: no cover
        n_, o, npl, qpad = gw.shape
        c, p, t3, v = xf.shape[1], xf.shape[2], offs3.shape[0], dwp.shape[3]
        xflat, gflat, dflat = xf.reshape(-1), gw.reshape(-1), dwp.reshape(-1)
        gstride = npl * qpad
        for ob in prange(o // WOB):
            for n in range(n_):
                for pl in range(npl):
                    for q0 in range(0, qpad, QBLOCK):
                        nq = (min(QBLOCK, qpad - q0)) // v
                        goff = (n * o + ob * WOB) * gstride + pl * qpad + q0
                        for ch in range(c):
                            xoff = (n * c + ch) * p + pl * plane_step + q0
                            for t0 in range(0, t3, TB):
                                _wgrad_micro(
                                    xflat,
                                    xoff,
                                    gflat,
                                    goff,
                                    gstride,
                                    offs3,
                                    t0,
                                    nq,
                                    dflat,
                                    ((ob * WOB * c + ch) * t3 + t0) * v,
                                    c * t3 * v,
                                )
