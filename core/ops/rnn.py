"""Fused recurrent layers: one Function per layer and direction over the whole sequence.

Each forward projects the inputs of ALL time steps with one matmul, then runs the recurrence with
one matmul per step; the backward through time is a single pass that ends with one matmul per
weight (the per-step gate gradients are kept and multiplied once). Layouts are PyTorch's:
time-major ``x`` of shape (T, B, I), gate order i, f, g, o (LSTM) and r, z, n (GRU).

``batch_sizes`` (PackedSequence support): the number of active sequences at each time step,
non-increasing; sequences are sorted by decreasing length so step ``t`` updates rows
``[:batch_sizes[t]]`` and every other row keeps its state. That one rule serves both directions:
run forward, a finished row is frozen (so its final state is the state at its last step); run in
reverse, a row starts from ``h0`` when its first (last-in-time) step comes. Inactive positions of
the output are zero, as in ``pad_packed_sequence``.

The shared step helpers and the packed <-> padded Functions live in ``rnn_support`` and are
re-exported here.
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend import cuda_fused
from ..backend.mkl_gemm import active as mkl_active
from ..backend.mkl_gemm import addmm_, matmul_into
from ..backend.mkl_gemm import matmul as mm
from ._blas import step_blas
from ._lowp import float32_compute
from .rnn_stream import StreamProduct, stream_plan
from .rnn_support import (  # noqa: F401  (re-exported: every name stays importable here)
    PackedToPadded,
    PaddedToPacked,
    _active,
    _by_time,
    _init_state,
    _Need,
    _outputs,
    _project,
    _sizes,
    _steps,
    _weight_grads,
    _zero_inactive,
    cell_kernels,
    joint_inputs,
    joint_steps,
    joint_weight_grads,
    packed_indices,
    row_plan,
    rows_backward,
    rows_forward,
    rows_forward_joint,
    scaled_transpose,
    sequence_kernels,
)


@float32_compute
class LSTMLayer(Function):
    """One LSTM layer in one direction over a whole sequence (optionally with a projection).

    forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse) -> (out, h_n, c_n);
    ``h0``/``c0``/biases/``w_hr`` may be None.
    """

    supports_double_backward = False
    _project_fn = staticmethod(_project)
    _weight_grads_fn = staticmethod(_weight_grads)

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, batch_sizes, reverse):
        xp = ctx.xp
        T, B, _ = x.shape
        Hd = w_hh.shape[0] // 4
        P = w_hh.shape[1]
        dt = x.dtype
        # sigmoid(v) = 0.5 * tanh(v / 2) + 0.5: scaling the i, f, o rows of the weights by 1/2
        # lets one tanh over all four gates serve, then one affine fixes the sigmoid gates.
        s = xp.full((4 * Hd,), 0.5, dtype=dt)
        s[2 * Hd : 3 * Hd] = 1
        shift = (1 - s).astype(dt)
        bias = None
        if b_ih is not None:
            bias = (b_ih + b_hh) * s if b_hh is not None else b_ih * s
        elif b_hh is not None:
            bias = b_hh * s
        # one fused cell: a CUDA launch (see cuda_fused) or a compiled pass (_numba_rnn)
        kern, kc = cell_kernels(xp, dt)
        seq, sk = (None, None) if w_hr is not None else sequence_kernels(xp, dt, B * P * 4 * Hd, B)
        # a large weight streamed by the steps' products (rnn_stream), in the Python loop
        stream = seq is None and w_hr is None and stream_plan(xp, dt, B, w_hh)
        rows = None if seq is not None or w_hr is not None or stream else row_plan(xp, dt, B, w_hh)
        # pre-activations, then activations in place (through the class: ember.compile's
        # embedding+LSTM fusion projects a gathered input instead); the compiled row loops
        # add the bias step by step (rows_forward), saving a pass over the projection
        joint = None if w_hr is not None else joint_inputs(ctx, x, rows, reverse, P)
        if joint is not None:  # x and the states side by side, for one weight-gradient product
            xh, x, hs = joint
        # ... and, on the small-matrix kernels, for one product a step of [x_t, h_t] by both
        # weights: the projection runs inside the steps (rows_forward_joint)
        in_steps = joint is not None and joint_steps(rows, w_ih, w_hh)
        acts = None
        if not in_steps:
            acts = ctx._project_fn(x, w_ih * s[:, None], None if rows is not None else bias)
        # Without MKL, each step's product runs as w_hh @ h.T (a (4H, n) result that the
        # compiled cell adds in) rather than h @ w_hh.T: OpenBLAS 0.3.31 takes a tall product
        # against a few columns faster than a few rows against a wide matrix, and the weight
        # needs no transposed copy. 1 thread, CPU ms a step (h @ w.T contiguous / w @ h.T /
        # torch): 8x1024 @ 1024x4096 2.77 / 2.47 / 2.32; 16x512 @ 512x2048 0.79 / 0.54 / 0.67;
        # 32x128 @ 128x512 0.055 / 0.047 / 0.054 (AMD EPYC, session 23).
        tall = seq is None and rows is None and not stream and kern is not None
        tall = tall and not mkl_active()
        if tall:
            whh_s = w_hh * s[:, None]
            gt_buf = np.empty(4 * Hd * B, dtype=dt)
        elif stream:
            step_mm = StreamProduct(w_hh * s[:, None], flip=False)
        elif rows is None:
            whh_t = scaled_transpose(xp, w_hh, s)
        whr_t = None if w_hr is None else xp.ascontiguousarray(w_hr.T)
        # States in processing order: hs[k] enters step k, hs[k + 1] leaves it (no copies).
        hs = xp.empty((T + 1, B, P), dtype=dt) if joint is None else hs
        cs = xp.empty((T + 1, B, Hd), dtype=dt)
        _init_state(hs[0], h0)
        _init_state(cs[0], c0)
        tanh_c = xp.empty((T, B, Hd), dtype=dt)
        # Packed batches leave the rows of finished sequences unwritten, and the projection's
        # weight gradient multiplies all of them (by zero): they must not be garbage (NaN).
        hpre = (
            None
            if w_hr is None
            else (xp.empty if batch_sizes is None else xp.zeros)((T, B, Hd), dtype=dt)
        )
        fused = cuda_fused.lstm_cell_forward if xp is not np else None
        if kern is not None:
            fused = lambda *arrays: kern.lstm_forward(*arrays, kc)  # noqa: E731
        if seq is not None:  # the whole loop compiled (_numba_rnn_seq)
            acts = np.ascontiguousarray(acts)
            bs = _sizes(batch_sizes, T, B)
            seq.lstm_forward_seq(acts, hs, cs, tanh_c, whh_t, bs, bool(reverse), sk)
        elif in_steps:
            acts = rows_forward_joint(rows, xh, w_ih, w_hh, s, cs, tanh_c, batch_sizes, kc, bias)
        elif rows is not None:  # the whole loop compiled on NumPy's OpenBLAS, by row ranges
            acts = rows_forward(rows, acts, hs, cs, tanh_c, w_hh, s, batch_sizes, reverse, kc, bias)
        else:
            with step_blas(xp, 2 * B * P * 4 * Hd, "lstm-fwd") as steps:
                for k, t in enumerate(_steps(T, reverse)):
                    n = _active(batch_sizes, t, B)
                    if n < B:  # finished (or not yet started) rows keep their state
                        hs[k + 1, n:] = hs[k, n:]
                        cs[k + 1, n:] = cs[k, n:]
                    a = acts[t, :n]
                    if tall:
                        gt = gt_buf[: 4 * Hd * n].reshape(4 * Hd, n)
                        np.matmul(whh_s, hs[k, :n].T, out=gt)
                        h = hs[k + 1, :n] if w_hr is None else hpre[t, :n]
                        kern.lstm_forward_t(a, gt, cs[k, :n], cs[k + 1, :n], tanh_c[t, :n], h, kc)
                        if w_hr is not None:
                            matmul_into(xp, h, whr_t, hs[k + 1, :n])
                        steps.tick()
                        continue
                    if stream:
                        a += step_mm(hs[k, :n])
                    else:
                        addmm_(a, hs[k, :n], whh_t)
                    if fused is not None:
                        h = hs[k + 1, :n] if w_hr is None else hpre[t, :n]
                        fused(a, cs[k, :n], cs[k + 1, :n], tanh_c[t, :n], h)
                        if w_hr is not None:
                            matmul_into(xp, h, whr_t, hs[k + 1, :n])
                        steps.tick()
                        continue
                    xp.tanh(a, out=a)
                    a *= s
                    a += shift
                    i, f, g, o = a[:, :Hd], a[:, Hd : 2 * Hd], a[:, 2 * Hd : 3 * Hd], a[:, 3 * Hd :]
                    cn = xp.multiply(f, cs[k, :n], out=cs[k + 1, :n])
                    cn += i * g
                    tc = xp.tanh(cn, out=tanh_c[t, :n])
                    if w_hr is None:
                        xp.multiply(o, tc, out=hs[k + 1, :n])
                    else:
                        hp = xp.multiply(o, tc, out=hpre[t, :n])
                        matmul_into(xp, hp, whr_t, hs[k + 1, :n])
                    steps.tick()
        out = _outputs(xp, hs, batch_sizes, reverse)
        ctx.save_for_backward(x, w_ih, w_hh, w_hr, acts, hs, cs, tanh_c, hpre)
        ctx.meta = (batch_sizes, reverse, Hd)
        ctx.xh = None if joint is None else xh
        ctx.set_materialize_grads(False)
        return out, hs[T].copy(), cs[T].copy()

    @staticmethod
    def backward(ctx, g_out, g_hn, g_cn):
        x, w_ih, w_hh, w_hr, acts, hs, cs, tanh_c, hpre = ctx.saved_tensors
        batch_sizes, reverse, Hd = ctx.meta
        xp = ctx.xp
        T, B, P = x.shape[0], x.shape[1], hs.shape[2]
        dt = x.dtype
        # C-ordered: the compiled loops update them in place by rows
        dh = xp.zeros((B, P), dtype=dt) if g_hn is None else g_hn.astype(dt, order="C")
        dc = xp.zeros((B, Hd), dtype=dt) if g_cn is None else g_cn.astype(dt, order="C")
        dG = (xp.empty if batch_sizes is None else xp.zeros)((T, B, 4 * Hd), dtype=dt)
        dR = None if w_hr is None else xp.zeros((T, B, P), dtype=dt)
        # d act / d pre-activation = u - a*a with u = a for sigmoid gates and 1 for tanh.
        m = xp.ones((4 * Hd,), dtype=dt)
        m[2 * Hd : 3 * Hd] = 0
        one_m = (1 - m).astype(dt)
        kern, kc = cell_kernels(xp, dt)
        fused = cuda_fused.lstm_cell_backward if xp is not np else None
        if kern is not None:
            fused = lambda *arrays: kern.lstm_backward(*arrays, kc)  # noqa: E731
        seq, sk = (None, None) if w_hr is not None else sequence_kernels(xp, dt, B * P * 4 * Hd, B)
        stream = seq is None and w_hr is None and stream_plan(xp, dt, B, w_hh)  # as forward
        rows = None if seq is not None or w_hr is not None or stream else row_plan(xp, dt, B, w_hh)
        step_mm = StreamProduct(w_hh, flip=True) if stream else None

        def back_product(dg, out):  # the step's dh = dg @ w_hh, into ``out``
            if step_mm is not None:
                out[...] = step_mm(dg)
            else:
                matmul_into(xp, dg, w_hh, out)

        if rows is not None:  # the whole loop compiled on NumPy's OpenBLAS, by row ranges
            g = None if g_out is None else g_out.astype(dt, copy=False)
            rows_backward(rows, g, dh, dc, acts, cs, tanh_c, w_hh, dG, batch_sizes, reverse, kc)
        elif seq is not None:  # the whole loop compiled (_numba_rnn_seq)
            go = dh.reshape(1, B, P) if g_out is None else g_out.astype(dt, copy=False)
            w = np.ascontiguousarray(w_hh)
            bs = _sizes(batch_sizes, T, B)
            seq.lstm_backward_seq(
                go, g_out is not None, dh, dc, acts, cs, tanh_c, w, dG, bs, bool(reverse), sk
            )
        else:
            with step_blas(xp, 2 * B * P * 4 * Hd, "lstm-bwd") as steps:
                for k, t in reversed(list(enumerate(_steps(T, reverse)))):
                    n = _active(batch_sizes, t, B)
                    dhn = dh[:n]
                    if g_out is not None:
                        dhn += g_out[t, :n]
                    if w_hr is not None:
                        dR[t, :n] = dhn
                        dhp = mm(dhn, w_hr)
                    else:
                        dhp = dhn
                    if fused is not None:  # as in the forward
                        fused(dhp, tanh_c[t, :n], cs[k, :n], acts[t, :n], dc[:n], dG[t, :n])
                        back_product(dG[t, :n], dhn)
                        steps.tick()
                        continue
                    a = acts[t, :n]
                    i, f, g, o = a[:, :Hd], a[:, Hd : 2 * Hd], a[:, 2 * Hd : 3 * Hd], a[:, 3 * Hd :]
                    tc = tanh_c[t, :n]
                    dcn = dc[:n]
                    tmp = dhp * o
                    tmp *= 1 - tc * tc
                    dcn += tmp
                    dg = dG[t, :n]
                    xp.multiply(dcn, g, out=dg[:, :Hd])
                    xp.multiply(dcn, cs[k, :n], out=dg[:, Hd : 2 * Hd])
                    xp.multiply(dcn, i, out=dg[:, 2 * Hd : 3 * Hd])
                    xp.multiply(dhp, tc, out=dg[:, 3 * Hd :])
                    deriv = a * m
                    deriv += one_m
                    deriv -= a * a
                    dg *= deriv
                    dcn *= f
                    back_product(dg, dhn)
                    steps.tick()
        xh, ctx.xh = getattr(ctx, "xh", None), None
        if xh is not None:  # x and the states in one buffer (joint_inputs)
            dx, dw_ih, dw_hh, db_ih, db_hh = joint_weight_grads(ctx, xh, dG, w_ih)
        else:
            dx, dw_ih, dw_hh, db_ih, db_hh = ctx._weight_grads_fn(
                ctx, x, dG, _by_time(hs, reverse), w_ih
            )
        need = ctx.needs_input_grad
        dw_hr = None
        if w_hr is not None and need[7]:
            dw_hr = mm(dR.reshape(T * B, P).T, hpre.reshape(T * B, Hd))
        return (
            dx,
            dh if need[1] else None,
            dc if need[2] else None,
            dw_ih,
            dw_hh,
            db_ih,
            db_hh,
            dw_hr,
            None,
            None,
        )


@float32_compute
class GRULayer(Function):
    """One GRU layer in one direction: PyTorch's r, z, n formulation (``b_hn`` inside r*(.)).

    forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse) -> (out, h_n).
    """

    supports_double_backward = False

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse):
        xp = ctx.xp
        T, B, _ = x.shape
        Hd = w_hh.shape[0] // 3
        dt = x.dtype
        # r and z are sigmoids: compute them as 0.5 * tanh(v / 2) + 0.5 (weights pre-scaled).
        s = xp.ones((3 * Hd,), dtype=dt)
        s[: 2 * Hd] = 0.5
        bias = None if b_ih is None else b_ih.copy()
        if b_hh is not None:  # b_hr, b_hz fold into the input projection; b_hn stays apart
            bias = xp.zeros((3 * Hd,), dtype=dt) if bias is None else bias
            bias[: 2 * Hd] += b_hh[: 2 * Hd]
        xw = _project(x, w_ih * s[:, None], None if bias is None else bias * s)
        whh_t = scaled_transpose(xp, w_hh, s)
        b_hn = None if b_hh is None else b_hh[2 * Hd :]
        hs = xp.empty((T + 1, B, Hd), dtype=dt)  # states in processing order, as in LSTMLayer
        _init_state(hs[0], h0)
        ghn = xp.empty((T, B, Hd), dtype=dt)  # w_hn @ h + b_hn, needed by the r gradient
        kern, kc = cell_kernels(xp, dt)
        gh_buf = xp.empty((B, 3 * Hd), dtype=dt)
        with step_blas(xp, 2 * B * Hd * 3 * Hd, "gru-fwd") as steps:
            for k, t in enumerate(_steps(T, reverse)):
                n = _active(batch_sizes, t, B)
                if n < B:
                    hs[k + 1, n:] = hs[k, n:]
                gh = matmul_into(xp, hs[k, :n], whh_t, gh_buf[:n])
                a = xw[t, :n]  # becomes [r, z, n] activations in place
                if kern is not None:  # the cell in one compiled pass (_numba_rnn)
                    has_b = b_hn is not None
                    bh = b_hn if has_b else kc
                    kern.gru_forward(a, gh, bh, has_b, hs[k, :n], ghn[t, :n], hs[k + 1, :n], kc)
                    steps.tick()
                    continue
                rz = a[:, : 2 * Hd]
                rz += gh[:, : 2 * Hd]
                xp.tanh(rz, out=rz)
                rz *= 0.5
                rz += 0.5
                r, z = a[:, :Hd], a[:, Hd : 2 * Hd]
                gn = ghn[t, :n]
                gn[...] = gh[:, 2 * Hd :]
                if b_hn is not None:
                    gn += b_hn
                nn = a[:, 2 * Hd :]
                nn += r * gn
                xp.tanh(nn, out=nn)
                hn = xp.subtract(hs[k, :n], nn, out=hs[k + 1, :n])  # h' = n + z * (h - n)
                hn *= z
                hn += nn
                steps.tick()
        out = _outputs(xp, hs, batch_sizes, reverse)
        ctx.save_for_backward(x, w_ih, w_hh, xw, hs, ghn)
        ctx.meta = (batch_sizes, reverse, Hd)
        ctx.set_materialize_grads(False)
        return out, hs[T].copy()

    @staticmethod
    def backward(ctx, g_out, g_hn):
        x, w_ih, w_hh, acts, hs, ghn = ctx.saved_tensors
        batch_sizes, reverse, Hd = ctx.meta
        xp = ctx.xp
        T, B = x.shape[0], x.shape[1]
        dt = x.dtype
        dh = xp.zeros((B, Hd), dtype=dt) if g_hn is None else g_hn.astype(dt, copy=True)
        new = xp.empty if batch_sizes is None else xp.zeros
        dX = new((T, B, 3 * Hd), dtype=dt)  # gradient of the input projection
        dGH = new((T, B, 3 * Hd), dtype=dt)  # gradient of h @ w_hh.T + b_hh
        kern, kc = cell_kernels(xp, dt)
        with step_blas(xp, 2 * B * Hd * 3 * Hd, "gru-bwd") as steps:
            for k, t in reversed(list(enumerate(_steps(T, reverse)))):
                n = _active(batch_sizes, t, B)
                dhn = dh[:n]
                if g_out is not None:
                    dhn += g_out[t, :n]
                a = acts[t, :n]
                r, z, nn = a[:, :Hd], a[:, Hd : 2 * Hd], a[:, 2 * Hd :]
                dxt, dgt = dX[t, :n], dGH[t, :n]
                if kern is not None:  # the cell in one compiled pass; dhn becomes z * dhn
                    kern.gru_backward(dhn, a, hs[k, :n], ghn[t, :n], dxt, dgt, kc)
                    addmm_(dhn, dgt, w_hh)
                    steps.tick()
                    continue
                dn = dxt[:, 2 * Hd :]
                xp.multiply(dhn, 1 - z, out=dn)
                dn *= 1 - nn * nn
                dr = dxt[:, :Hd]
                xp.multiply(dn, ghn[t, :n], out=dr)
                dr *= r - r * r
                dz = dxt[:, Hd : 2 * Hd]
                xp.subtract(hs[k, :n], nn, out=dz)
                dz *= dhn
                dz *= z - z * z
                dgt[:, : 2 * Hd] = dxt[:, : 2 * Hd]
                xp.multiply(dn, r, out=dgt[:, 2 * Hd :])
                dhn *= z
                addmm_(dhn, dgt, w_hh)
                steps.tick()
        need = ctx.needs_input_grad
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(
            _Need(need[0], need[2], need[3], need[4], need[5]),
            x,
            dX,
            _by_time(hs, reverse),
            w_ih,
            dGH,
        )
        return (dx, dh if need[1] else None, dw_ih, dw_hh, db_ih, db_hh, None, None)


from .rnn_elman import RNNLayer  # noqa: E402, F401  (its own file; importable here)
