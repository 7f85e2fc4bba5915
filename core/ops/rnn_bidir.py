"""A bidirectional LSTM layer with its two directions on two threads (issue 23, session 24).

The two directions of a layer share nothing but their input until their outputs are joined:
each reads ``x``, projects it with its own weights, runs its own recurrence and, backward, makes
its own weight gradients. At two threads, ``LSTM(bidirectional=True)`` therefore runs each
direction whole (projection, recurrence, and backward the recurrence and the weight gradients)
as ``LSTMLayer``'s own single-threaded code on one thread, with no synchronisation until the
output. Per layer that replaces two sequences of small per-step products that each used both
threads (BLAS's, or the batch split of ``rnn_support.row_bounds``) by two independent
single-threaded ones; the input gradient is the only sum of the two.

Used by ``nn.LSTM`` (``RNNBase._run``) where ``applies`` says so; the direction-by-direction
path stays for one thread, more than two threads (not measured here), recurrent weights over
``MAX_WEIGHT``, CuPy and dtypes without the compiled cells (a Python step loop on each thread
would contend for the GIL).
"""

from __future__ import annotations

import numpy as np

from ..autograd.function import Function
from ..backend.threads import num_threads, run_parts
from ._lowp import float32_compute
from .rnn import LSTMLayer
from .rnn_support import cell_kernels

__all__ = ["BiLSTMLayer", "applies"]


# Only while each direction's recurrent weight is at most this many bytes: two directions on
# two cores stream two weights a step, and two 16 MiB ones (H1024) filled this machine's 32 MiB
# L3 (per-direction CPU +24-34%, n8 T16 1024->1024 bi 2T 203 ms against 142 for one direction
# at a time on BLAS's two threads); 9 MiB ones (H768) still gained (65 against 79 ms).
MAX_WEIGHT = 10 << 20


def applies(x, w_hh) -> bool:
    """Whether ``BiLSTMLayer`` should run a bidirectional LSTM layer over ``x`` (a tensor) with
    recurrent weights like ``w_hh`` (a tensor): exactly two threads, NumPy arrays of a dtype
    whose cells are compiled, and a recurrent weight of at most ``MAX_WEIGHT`` bytes."""
    data = getattr(x, "_data", None)
    if type(data) is not np.ndarray or num_threads() != 2:
        return False
    if w_hh.numel() * 4 > MAX_WEIGHT:  # (as float32: float16/bfloat16 run in float32)
        return False
    dt = data.dtype
    if dt == np.float16 or str(dt) == "bfloat16":  # float32_compute runs them in float32
        dt = np.dtype(np.float32)
    return cell_kernels(np, dt)[0] is not None


class _Direction:
    """The ``ctx`` of one direction's ``LSTMLayer.forward`` / ``backward`` inside
    ``BiLSTMLayer``: what those read and write, nothing else."""

    _project_fn = staticmethod(LSTMLayer._project_fn)
    _weight_grads_fn = staticmethod(LSTMLayer._weight_grads_fn)

    def __init__(self, xp, needs_input_grad) -> None:
        self.xp = xp
        self.needs_input_grad = needs_input_grad
        self.saved_tensors = ()
        self.meta = None

    def save_for_backward(self, *arrays) -> None:
        self.saved_tensors = arrays

    def set_materialize_grads(self, value: bool) -> None:
        pass


def _on_two_threads(fn) -> list:
    """``[fn(0), fn(1)]``, one on each thread, with BLAS held to one thread meanwhile (each
    part's products stay on its own thread; ``run_parts`` makes ``num_threads()`` 1 there, so
    ``LSTMLayer`` picks its single-threaded paths)."""
    from ._blas import _get_controller

    controller = _get_controller()
    limiter = controller.limit(limits=1, user_api="blas") if controller else None
    try:
        return run_parts(lambda lo, hi: fn(lo), [0, 1, 2])
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


def _half(g, d: int, P: int):
    return None if g is None else np.ascontiguousarray(g[..., d * P : (d + 1) * P])


@float32_compute
class BiLSTMLayer(Function):
    """Both directions of one LSTM layer, one thread each.

    forward(x, h0_f, c0_f, h0_b, c0_b, w_ih_f, w_hh_f, b_ih_f, b_hh_f, w_hr_f, w_ih_b, w_hh_b,
    b_ih_b, b_hh_b, w_hr_b, batch_sizes) -> (out, h_n_f, c_n_f, h_n_b, c_n_b); ``out`` is
    (T, B, 2P), the forward direction's outputs then the reverse one's, as ``torch.cat``
    of the two ``LSTMLayer`` outputs. States, biases and ``w_hr`` may be None.
    """

    supports_double_backward = False

    @staticmethod
    def forward(ctx, x, h0f, c0f, h0b, c0b, *args):
        weights, batch_sizes = (args[0:5], args[5:10]), args[10]
        need = ctx.needs_input_grad
        states = ((h0f, c0f), (h0b, c0b))
        # each direction's needs in LSTMLayer's argument positions (x, h0, c0, weights, -, -)
        subs = [
            _Direction(
                ctx.xp, (need[0], *need[1 + 2 * d : 3 + 2 * d], *need[5 + 5 * d : 10 + 5 * d])
            )
            for d in (0, 1)
        ]
        for sub in subs:
            sub.needs_input_grad += (False, False)

        def run(d):
            h0, c0 = states[d]
            return LSTMLayer.forward(subs[d], x, h0, c0, *weights[d], batch_sizes, d == 1)

        (out_f, h_f, c_f), (out_b, h_b, c_b) = _on_two_threads(run)
        out = np.concatenate((out_f, out_b), axis=-1)
        # what each direction saved, kept by this node (freed after its backward, checked for
        # in-place changes of the inputs among them, as a layer's own)
        saved_f, saved_b = subs[0].saved_tensors, subs[1].saved_tensors
        ctx.save_for_backward(*saved_f, *saved_b)
        ctx.meta = (
            len(saved_f),
            subs[0].meta,
            subs[1].meta,
            subs[0].needs_input_grad,
            subs[1].needs_input_grad,
            out_f.shape[-1],
        )
        ctx.set_materialize_grads(False)
        return out, h_f, c_f, h_b, c_b

    @staticmethod
    def backward(ctx, g_out, g_hf, g_cf, g_hb, g_cb):
        saved = ctx.saved_tensors
        n, meta_f, meta_b, need_f, need_b, P = ctx.meta
        subs = [_Direction(ctx.xp, need_f), _Direction(ctx.xp, need_b)]
        subs[0].saved_tensors, subs[0].meta = saved[:n], meta_f
        subs[1].saved_tensors, subs[1].meta = saved[n:], meta_b
        grads = ((g_hf, g_cf), (g_hb, g_cb))

        def run(d):
            g_h, g_c = grads[d]
            return LSTMLayer.backward(subs[d], _half(g_out, d, P), g_h, g_c)

        res_f, res_b = _on_two_threads(run)
        dx = res_f[0]
        if dx is None:
            dx = res_b[0]
        elif res_b[0] is not None:
            dx += res_b[0]
        # each direction's (dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, dw_hr, -, -)
        return (dx, res_f[1], res_f[2], res_b[1], res_b[2], *res_f[3:8], *res_b[3:8], None)
