"""The fused Elman RNN layer (``nn.RNN``'s tanh / relu recurrence), one Function per layer and
direction over the whole sequence; layouts and the ``batch_sizes`` rule as ``rnn``'s LSTM and
GRU layers (see that module's docstring), whose step helpers it shares."""

from __future__ import annotations

from ..autograd.function import Function
from ..backend.mkl_gemm import matmul_into
from ._blas import step_blas
from ._lowp import float32_compute
from .rnn_support import (
    _active,
    _by_time,
    _init_state,
    _Need,
    _outputs,
    _project,
    _steps,
    _weight_grads,
)


@float32_compute
class RNNLayer(Function):
    """One Elman RNN layer in one direction, ``h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh)``.

    forward(x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, relu) -> (out, h_n).
    """

    supports_double_backward = False

    @staticmethod
    def forward(ctx, x, h0, w_ih, w_hh, b_ih, b_hh, batch_sizes, reverse, relu):
        xp = ctx.xp
        T, B, _ = x.shape
        Hd = w_hh.shape[0]
        dt = x.dtype
        bias = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
        pre = _project(x, w_ih, bias)
        whh_t = xp.ascontiguousarray(w_hh.T)
        hs = xp.empty((T + 1, B, Hd), dtype=dt)  # states in processing order
        _init_state(hs[0], h0)
        with step_blas(xp, 2 * B * Hd * Hd, "rnn-fwd") as steps:
            for k, t in enumerate(_steps(T, reverse)):
                n = _active(batch_sizes, t, B)
                if n < B:
                    hs[k + 1, n:] = hs[k, n:]
                a = matmul_into(xp, hs[k, :n], whh_t, hs[k + 1, :n])
                a += pre[t, :n]
                if relu:
                    xp.maximum(a, 0, out=a)
                else:
                    xp.tanh(a, out=a)
                steps.tick()
        out = _outputs(xp, hs, batch_sizes, reverse)
        ctx.save_for_backward(x, w_ih, w_hh, hs)
        ctx.meta = (batch_sizes, reverse, relu)
        ctx.set_materialize_grads(False)
        return out, hs[T].copy()

    @staticmethod
    def backward(ctx, g_out, g_hn):
        x, w_ih, w_hh, hs = ctx.saved_tensors
        batch_sizes, reverse, relu = ctx.meta
        xp = ctx.xp
        T, B, Hd = x.shape[0], x.shape[1], hs.shape[2]
        dt = x.dtype
        dh = xp.zeros((B, Hd), dtype=dt) if g_hn is None else g_hn.astype(dt, copy=True)
        dP = (xp.empty if batch_sizes is None else xp.zeros)((T, B, Hd), dtype=dt)
        with step_blas(xp, 2 * B * Hd * Hd, "rnn-bwd") as steps:
            for k, t in reversed(list(enumerate(_steps(T, reverse)))):
                n = _active(batch_sizes, t, B)
                dhn = dh[:n]
                if g_out is not None:
                    dhn += g_out[t, :n]
                dp = dP[t, :n]
                y = hs[k + 1, :n]
                if relu:
                    xp.multiply(dhn, y > 0, out=dp)
                else:
                    xp.multiply(dhn, 1 - y * y, out=dp)
                matmul_into(xp, dp, w_hh, dhn)
                steps.tick()
        need = ctx.needs_input_grad
        dx, dw_ih, dw_hh, db_ih, db_hh = _weight_grads(
            _Need(need[0], need[2], need[3], need[4], need[5]), x, dP, _by_time(hs, reverse), w_ih
        )
        return (dx, dh if need[1] else None, dw_ih, dw_hh, db_ih, db_hh, None, None, None)
