"""Compiled (numba) cells of the fused recurrent layers (``rnn``): the LSTM and GRU cell of one
time step, forward and backward, each one pass over the step's rows.

Why: the NumPy cell of an LSTM step makes ~12 calls forward and ~15 backward, each a pass over
(part of) the (B, 4H) pre-activations plus a temporary; at B=32, H=128 a step's cell took more
time than its matrix product. Here each element of the state is read and written once, the
gates are computed from the vectorised float32 exponential of ``_numba_act`` (``fexp``) as
``sigmoid(v) = 1 / (1 + exp(-v))`` and ``tanh(v) = 2 / (1 + exp(-2v)) - 1`` (absolute error
~1e-7; float64 calls libm's ``exp``, so the float64 gradchecks check the fused formulas).

The layouts are ``rnn``'s: the LSTM / GRU pre-activations of the sigmoid gates arrive halved
(the weights are pre-scaled so that the NumPy path can use one ``tanh``), hence ``exp(-2 v)``
for every gate. The activations are written back over the pre-activations (the backward reads
them); the per-step matrix products stay with ``mkl_gemm`` in the caller.

Imported lazily by ``rnn_support.cell_kernels``; without numba it still imports, with
``AVAILABLE`` False, and the NumPy cells run instead.
"""

from __future__ import annotations

import numpy as np

from ._numba_act import _FLAGS, AVAILABLE, fexp, jit_with

# no "reassoc": a compiled caller (``_numba_rnn_blas``) links its own copy of a cell, which LLVM
# optimizes a second time; with reassociation allowed the copy rounded otherwise than the cell
# JIT-compiled alone (a product chain regrouped), so results depended on whether numba's cache
# was warm. The cells have no reductions, so reassociation bought nothing.
_jit = jit_with(_FLAGS - {"reassoc"})

__all__ = [
    "AVAILABLE",
    "consts",
    "lstm_forward",
    "lstm_forward_t",
    "lstm_backward",
    "gru_forward",
    "gru_backward",
    "scaled_transpose",
]


def consts(dtype):
    """The constants the kernels read, in the data's dtype (a Python float would promote
    float32 arithmetic to float64): 1, 2."""
    return np.array([1.0, 2.0], dtype=dtype)


@_jit
def lstm_forward(a, c0, c1, tc, h, k):  # pragma: no cover - compiled
    """One LSTM cell step over ``n`` rows. ``a`` (n, 4H): pre-activations (i, f, o halved),
    overwritten by the activations i, f, g, o; ``c0`` the entering cell state; writes the new
    cell state ``c1``, ``tc = tanh(c1)`` and ``h = o * tc``."""
    one, two = k[0], k[1]
    n, H = c0.shape
    for r in range(n):
        # Simple loops over contiguous runs vectorise; one loop with seven streams, or a tanh
        # loop at an offset, did not (measured 3-5x slower). So every gate first gets
        # q = sigmoid(2 v) and g = tanh(v) = 2 q - 1 is fixed up in the cell-state loop.
        row = a[r]
        for j in range(4 * H):
            row[j] = one / (one + fexp(-two * row[j]))
        cr, tr, hr, c0r = c1[r], tc[r], h[r], c0[r]
        for j in range(H):
            g = two * row[2 * H + j] - one
            row[2 * H + j] = g
            cr[j] = row[H + j] * c0r[j] + row[j] * g
        for j in range(H):
            tr[j] = two / (one + fexp(-two * cr[j])) - one
        for j in range(H):
            hr[j] = row[3 * H + j] * tr[j]


@_jit
def lstm_forward_t(a, gt, c0, c1, tc, h, k):  # pragma: no cover - compiled
    """``lstm_forward`` after ``a += gt.T``: ``gt`` (4H, n) is the step's recurrent product
    computed as ``w_hh @ h.T`` (see ``rnn.LSTMLayer.forward`` for why that orientation)."""
    n, G = a.shape[0], a.shape[1]
    # row by row, gt read at a stride (it is L2-sized): 32x512 took 10 us so, 66 us with the
    # loops swapped (a written at a stride), 12 us as NumPy's ``a += gt.T``
    for r in range(n):
        row = a[r]
        for j in range(G):
            row[j] += gt[j, r]
    lstm_forward(a, c0, c1, tc, h, k)


@_jit
def lstm_backward(dh, tc, c0, a, dc, dg, k):  # pragma: no cover - compiled
    """One LSTM cell step backward over ``n`` rows (``cuda_fused.lstm_cell_backward``'s
    arguments): ``dh`` is the gradient of the step's ``h``, ``tc`` tanh of its cell state,
    ``c0`` the entering cell state, ``a`` the activations; ``dc`` (the gradient of the new cell
    state) becomes that of ``c0``; writes the pre-activation gradients ``dg`` (n, 4H)."""
    one = k[0]
    n, H = c0.shape
    for r in range(n):
        # one pass per output over contiguous runs of the row: they vectorise; the single
        # loop writing all four gates and dc (nine streams) compiled to scalar code (B32 H128:
        # 9.6 -> 3.7 us)
        d, t, ar, dcr, dgr, c0r = dh[r], tc[r], a[r], dc[r], dg[r], c0[r]
        for j in range(H):
            o = ar[3 * H + j]
            dgr[3 * H + j] = d[j] * t[j] * (o - o * o)
        for j in range(H):
            dcr[j] += d[j] * ar[3 * H + j] * (one - t[j] * t[j])
        for j in range(H):
            i = ar[j]
            dgr[j] = dcr[j] * ar[2 * H + j] * (i - i * i)
        for j in range(H):
            f = ar[H + j]
            dgr[H + j] = dcr[j] * c0r[j] * (f - f * f)
        for j in range(H):
            g = ar[2 * H + j]
            dgr[2 * H + j] = dcr[j] * ar[j] * (one - g * g)
        for j in range(H):
            dcr[j] *= ar[H + j]


@_jit
def gru_forward(a, gh, b_hn, has_bias, h0, gn, h1, k):  # pragma: no cover - compiled
    """One GRU cell step over ``n`` rows. ``a`` (n, 3H): the input projection (r, z halved),
    overwritten by the activations r, z, n; ``gh`` (n, 3H) the hidden projection (r, z halved);
    writes ``gn = gh_n + b_hn`` and the new state ``h1 = n + z * (h0 - n)``."""
    one, two = k[0], k[1]
    n, H = h0.shape
    for r in range(n):
        # contiguous runs, sigmoid only, as in ``lstm_forward`` (tanh(v) = 2 sigmoid(2 v) - 1)
        row, gr, gnr, h0r, h1r = a[r], gh[r], gn[r], h0[r], h1[r]
        for j in range(2 * H):
            row[j] += gr[j]
        for j in range(2 * H):
            row[j] = one / (one + fexp(-two * row[j]))
        for j in range(H):
            g = gr[2 * H + j] + b_hn[j] if has_bias else gr[2 * H + j]
            gnr[j] = g
            row[2 * H + j] += row[j] * g
        nr = row[2 * H :]
        for j in range(H):
            nr[j] = one / (one + fexp(-two * nr[j]))
        for j in range(H):
            nn = two * row[2 * H + j] - one
            row[2 * H + j] = nn
            h1r[j] = nn + row[H + j] * (h0r[j] - nn)


@_jit
def gru_backward(dh, a, h0, gn, dx, dgh, k):  # pragma: no cover - compiled
    """One GRU cell step backward over ``n`` rows: ``dh`` is the gradient of the new
    state and becomes ``z * dh`` (the caller adds the hidden product's part); writes the input
    projection's gradient ``dx`` and the hidden projection's ``dgh`` (n, 3H each)."""
    one = k[0]
    n, H = h0.shape
    for r in range(n):
        for j in range(H):
            d = dh[r, j]
            rr = a[r, j]
            z = a[r, H + j]
            nn = a[r, 2 * H + j]
            dn = d * (one - z) * (one - nn * nn)
            dr = dn * gn[r, j] * (rr - rr * rr)
            dz = (h0[r, j] - nn) * d * (z - z * z)
            dx[r, j] = dr
            dx[r, H + j] = dz
            dx[r, 2 * H + j] = dn
            dgh[r, j] = dr
            dgh[r, H + j] = dz
            dgh[r, 2 * H + j] = dn * rr
            dh[r, j] = d * z


@_jit
def scaled_transpose(w, s, out):  # pragma: no cover - compiled
    """``out[j, i] = w[i, j] * s[i]``: the layer's scaled recurrent weight, transposed for the
    steps' products, in 64 x 64 tiles. NumPy's ``ascontiguousarray((w * s[:, None]).T)`` reads
    a column of ``w`` per output row (4 KiB apart at 1024 columns, all in a few cache sets):
    4096 x 1024 float32 took 31 ms, ~8 ms so."""
    n, m = w.shape
    for i0 in range(0, n, 64):
        i1 = min(i0 + 64, n)
        for j0 in range(0, m, 64):
            j1 = min(j0 + 64, m)
            for j in range(j0, j1):
                for i in range(i0, i1):
                    out[j, i] = w[i, j] * s[i]
