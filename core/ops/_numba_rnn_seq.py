"""The whole LSTM recurrence as one compiled loop (forward and backward): each step's matrix
product calls MKL from compiled code (``backend._mkl_kernels``) and the cell is
``_numba_rnn``'s, so a step costs no Python at all.

Why: with the compiled cell, what was left of an LSTM step (n32 H128) beyond its product and
its cell was ~25 us of Python per step -- a dozen slices, ``addmm_``'s checks, the step timer --
about a fifth of the layer. Used by ``rnn.LSTMLayer`` for NumPy float32 without a projection
(``proj_size``) when MKL is loaded (``mkl_gemm.enabled()``), and the per-step product would go
to MKL anyway (one thread, a product below ``mkl_gemm.MULTI_FLOPS``, or one of at most
``rnn_support.SEQ_MULTI_ROWS`` rows). Importing this module
needs MKL loaded (the products resolve ``cblas_sgemm_64`` by name), hence ``rnn_support``'s
lazy import.

``bs`` holds the active rows of each time step (``batch_sizes``, or ``B`` everywhere); rows
past ``bs[t]`` keep their state, as in the Python loop.
"""

from __future__ import annotations

from numba import njit

from ..backend import _mkl_kernels
from ._numba_rnn import lstm_backward, lstm_forward

__all__ = ["lstm_forward_seq", "lstm_backward_seq"]

_gemm = njit(cache=True, nogil=True)(_mkl_kernels.gemm)


@njit(cache=True, nogil=True)
def lstm_forward_seq(acts, hs, cs, tc, whh_t, bs, reverse, k):  # pragma: no cover - compiled
    """``rnn.LSTMLayer.forward``'s loop: ``acts`` (T, B, 4H) holds the input projections and
    becomes the activations; ``hs`` / ``cs`` (T + 1, B, H) the states in processing order
    (``[0]`` set by the caller); ``tc`` (T, B, H) tanh of the cell states by time."""
    T, B = acts.shape[0], acts.shape[1]
    for s in range(T):
        t = T - 1 - s if reverse else s
        n = bs[t]
        if n < B:  # finished (or not yet started) rows keep their state
            hs[s + 1, n:] = hs[s, n:]
            cs[s + 1, n:] = cs[s, n:]
        if n == 0:
            continue
        a = acts[t, :n]
        if not _gemm(hs[s, :n], whh_t, a, 1):  # the caller passes contiguous arrays
            raise ValueError("lstm_forward_seq: an operand without a unit-stride axis")
        lstm_forward(a, cs[s, :n], cs[s + 1, :n], tc[t, :n], hs[s + 1, :n], k)


@njit(cache=True, nogil=True)
def lstm_backward_seq(g_out, has_gout, dh, dc, acts, cs, tc, w_hh, dg, bs, reverse, k):  # noqa: E501  # pragma: no cover
    """``rnn.LSTMLayer.backward``'s loop: ``dh`` / ``dc`` (B, H) enter as the gradients of the
    final states and leave as those of the initial ones; ``g_out`` (T, B, H) the output's
    gradient by time (read when ``has_gout``); writes the pre-activation gradients ``dg``."""
    T = acts.shape[0]
    H = dh.shape[1]
    for s in range(T - 1, -1, -1):
        t = T - 1 - s if reverse else s
        n = bs[t]
        if n == 0:
            continue
        dhn = dh[:n]
        if has_gout:
            for r in range(n):
                for j in range(H):
                    dhn[r, j] += g_out[t, r, j]
        lstm_backward(dhn, tc[t, :n], cs[s, :n], acts[t, :n], dc[:n], dg[t, :n], k)
        if not _gemm(dg[t, :n], w_hh, dhn, 0):
            raise ValueError("lstm_backward_seq: an operand without a unit-stride axis")
