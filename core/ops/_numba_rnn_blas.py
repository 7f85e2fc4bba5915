"""The whole LSTM recurrence as one compiled loop on NumPy's own OpenBLAS (forward and backward),
for rows ``[r0, r1)`` of the batch, so that two parts can run on two threads.

Why: without MKL (``_numba_rnn_seq`` needs it), ``rnn.LSTMLayer`` ran its steps in Python: a
step of LSTM n32 H128 is a 47 us product and a 20 us cell forward (10 us backward), and the
Python around them cost ~25 us forward and ~40 us backward (slices, the step timer, the cell's
lambda), a fifth of the layer's time at one thread. Here each step's product calls NumPy's
OpenBLAS from compiled code. And since the rows of a batch never meet in a recurrence, the
rows can be split between threads for the whole sequence with no synchronisation per step:
at two threads each part runs its own single-threaded products on half the rows.

NumPy's wheels carry OpenBLAS with ILP64 CBLAS symbols renamed ``scipy_cblas_*64_``; the
library is located among the process's mappings and made visible to LLVM by path
(``load_library_permanently``), so the kernels name the symbol (``ExternalFunction``) and their
machine code caches on disk. Where the library or its symbol is absent (another NumPy build,
not Linux), ``AVAILABLE`` is False and the Python loop runs.

The forward's products are ``w_hh @ h.T`` (a (4H, n) result that ``_numba_rnn.lstm_forward_t``
adds in; see ``rnn.LSTMLayer.forward`` for why that orientation), the backward's ``dg @ w_hh``.
"""

from __future__ import annotations

import ctypes

import numpy as np

from ._numba_act import AVAILABLE as _NUMBA

__all__ = ["AVAILABLE", "lstm_forward_rows", "lstm_backward_rows"]

_SGEMM, _DGEMM = "scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_"
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _numpy_openblas() -> str | None:
    """Path of the OpenBLAS library NumPy loaded, if it exports the symbols used here."""
    try:
        with open("/proc/self/maps") as fh:
            paths = {ln.split()[-1] for ln in fh if "openblas" in ln and "/" in ln}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        if hasattr(lib, _SGEMM) and hasattr(lib, _DGEMM):
            return path
    return None


def _load() -> bool:
    if not _NUMBA:
        return False
    path = _numpy_openblas()
    if path is None:
        return False
    try:
        import llvmlite.binding as llvm

        llvm.load_library_permanently(path)
    except (ImportError, OSError, RuntimeError):
        return False
    return True


AVAILABLE = _load()

if AVAILABLE:
    from numba import njit, types

    from ._numba_rnn import lstm_backward, lstm_forward, lstm_forward_t

    def _gemm_type(real):
        i = types.int64
        p = types.voidptr
        return types.void(i, i, i, i, i, i, real, p, i, p, i, real, p, i)

    _sgemm = types.ExternalFunction(_SGEMM, _gemm_type(types.float32))
    _dgemm = types.ExternalFunction(_DGEMM, _gemm_type(types.float64))

    @njit(cache=True, nogil=True, inline="always")
    def _gemm(tb, m, n, k, a, lda, b, ldb, beta, c, ldc):  # pragma: no cover - compiled
        """``c = a @ op(b) + beta * c`` (row-major; ``op`` transposes when ``tb`` is
        ``_TRANS``; ``beta`` 0 or 1); ``a``, ``b``, ``c`` are arrays whose first element
        starts the matrix."""
        if a.itemsize == 4:
            _sgemm(_ROW_MAJOR, _NO_TRANS, tb, m, n, k, np.float32(1), a.ctypes.data, lda,
                   b.ctypes.data, ldb, np.float32(beta), c.ctypes.data, ldc)  # fmt: skip
        else:
            _dgemm(_ROW_MAJOR, _NO_TRANS, tb, m, n, k, 1.0, a.ctypes.data, lda,
                   b.ctypes.data, ldb, np.float64(beta), c.ctypes.data, ldc)  # fmt: skip

    @njit(cache=True, nogil=True)
    def lstm_forward_rows(acts, hs, cs, tc, whh, wide, gt, bs, reverse, r0, r1, k):  # noqa: E501  # pragma: no cover
        """``rnn.LSTMLayer.forward``'s loop over rows ``[r0, r1)``: ``acts`` (T, B, 4H) holds
        the input projections and becomes the activations; ``hs`` / ``cs`` (T + 1, B, H) the
        states in processing order (``[0]`` set by the caller, all C-contiguous); ``tc`` (T, B,
        H) tanh of the cell states by time; ``bs`` the active rows of each step. ``whh``: the
        scaled weight, (H, 4H) transposed when ``wide`` (each step adds ``h @ whh`` into
        ``acts``), else (4H, H) (``whh @ h.T`` into ``gt``, a scratch of at least
        ``4H * (r1 - r0)`` elements, which the cell adds in)."""
        T = acts.shape[0]
        G = acts.shape[2]
        P = hs.shape[2]
        w = r1 - r0
        for s in range(T):
            t = T - 1 - s if reverse else s
            n = min(max(bs[t] - r0, 0), w)
            if n < w:  # finished (or not yet started) rows keep their state
                hs[s + 1, r0 + n : r1] = hs[s, r0 + n : r1]
                cs[s + 1, r0 + n : r1] = cs[s, r0 + n : r1]
            if n == 0:
                continue
            e = r0 + n
            if wide:
                a = acts[t, r0:e]
                _gemm(_NO_TRANS, n, G, P, hs[s, r0:e], P, whh, G, 1, a, G)
                lstm_forward(a, cs[s, r0:e], cs[s + 1, r0:e], tc[t, r0:e], hs[s + 1, r0:e], k)
                continue
            g = gt[: G * n].reshape((G, n))
            _gemm(_TRANS, G, n, P, whh, P, hs[s, r0:e], P, 0, g, n)
            lstm_forward_t(acts[t, r0:e], g, cs[s, r0:e], cs[s + 1, r0:e], tc[t, r0:e],
                           hs[s + 1, r0:e], k)  # fmt: skip

    @njit(cache=True, nogil=True)
    def lstm_backward_rows(g_out, has_gout, dh, dc, acts, cs, tc, w_hh, dg, bs, reverse, r0, r1, k):  # noqa: E501  # pragma: no cover
        """``rnn.LSTMLayer.backward``'s loop over rows ``[r0, r1)``: ``dh`` / ``dc`` (B, H)
        enter as the gradients of the final states and leave as those of the initial ones;
        ``g_out`` (T, B, H) the output's gradient by time (read when ``has_gout``); writes the
        pre-activation gradients ``dg`` (T, B, 4H) of the active rows."""
        T = acts.shape[0]
        G, P = w_hh.shape
        w = r1 - r0
        for s in range(T - 1, -1, -1):
            t = T - 1 - s if reverse else s
            n = min(max(bs[t] - r0, 0), w)
            if n == 0:
                continue
            e = r0 + n
            dhn = dh[r0:e]
            if has_gout:
                go = g_out[t]
                for r in range(r0, e):
                    for j in range(P):
                        dh[r, j] += go[r, j]
            dgt = dg[t, r0:e]
            lstm_backward(dhn, tc[t, r0:e], cs[s, r0:e], acts[t, r0:e], dc[r0:e], dgt, k)
            _gemm(_NO_TRANS, n, P, G, dgt, G, w_hh, P, 0, dhn, P)
