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

``lstm_forward_joint_rows`` is the forward on the small-matrix kernels when the layer's inputs
and states share one buffer (``rnn_support.joint_inputs``): each step multiplies its rows
``[x_t, h_t]`` by both weights at once, so no all-steps input projection is written out first.

The forward's products are ``w_hh @ h.T`` (a (4H, n) result that ``_numba_rnn.lstm_forward_t``
adds in; see ``rnn.LSTMLayer.forward`` for why that orientation), the backward's ``dg @ w_hh``.

Where each row range runs on one thread (``small``), the products instead call OpenBLAS's
small-matrix kernels (``sgemm_small_kernel_nn_<core>``, exported by the same library for the
core it selected at load), which multiply the operands where they lie. Its ``sgemm`` packs
both operands first: for a step that is the whole recurrent weight again on every call, a
fixed ~40 us a call at H256 (1 thread: ``w @ h.T`` of 4, 8, 16, 32, 64 rows took 64, 86, 108,
188, 346 us; ``dg @ w`` 58, 80, 116, 199, 352 us), ~20 % of a 32-row step and ~35 % of a
16-row one. The small kernel adds ``h @ w.T`` straight into the pre-activations (no (4H, n)
scratch for the cell to add in): 32 rows 159 us against 189 + ~19 us, 16 rows 84 against 114;
backward 155 against 201, 80 against 117 (session 25).
"""

from __future__ import annotations

import ctypes

import numpy as np

from ._numba_act import AVAILABLE as _NUMBA

__all__ = [
    "AVAILABLE",
    "SMALL",
    "lstm_forward_rows",
    "lstm_forward_joint_rows",
    "lstm_backward_rows",
]

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


# Cores whose small-matrix kernels were measured (session 25, AMD EPYC with AVX-512, where
# OpenBLAS selects SkylakeX); another core's may be OpenBLAS's generic C loops, which nobody
# measured against its sgemm.
_SMALL_CORES = ("SKYLAKEX",)


def _small_suffix(path: str) -> str | None:
    """The core suffix of the small-matrix kernels OpenBLAS chose for this CPU, where it is
    one of ``_SMALL_CORES`` and the library exports them for both dtypes; else None."""
    try:
        lib = ctypes.CDLL(path)
        name = lib.scipy_openblas_get_corename64_
    except (OSError, AttributeError):
        return None
    name.restype = ctypes.c_char_p
    suffix = (name() or b"").decode("ascii", "replace").upper()
    syms = [f"{t}gemm_small_kernel_{b}nn_{suffix}" for t in "sd" for b in ("", "b0_")]
    return suffix if suffix in _SMALL_CORES and all(hasattr(lib, s) for s in syms) else None


def _load() -> tuple[bool, str | None]:
    if not _NUMBA:
        return False, None
    path = _numpy_openblas()
    if path is None:
        return False, None
    try:
        import llvmlite.binding as llvm

        llvm.load_library_permanently(path)
    except (ImportError, OSError, RuntimeError):
        return False, None
    return True, _small_suffix(path)


AVAILABLE, _SUFFIX = _load()
# OpenBLAS's small-matrix kernels are there: the loops' ``small`` argument may be True
SMALL = _SUFFIX is not None

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

    if SMALL:

        def _small_type(real, beta):
            i, p = types.int64, types.voidptr
            if beta:
                return types.int32(i, i, i, p, i, real, p, i, real, p, i)
            return types.int32(i, i, i, p, i, real, p, i, p, i)

        _ext = types.ExternalFunction
        _f32, _f64 = types.float32, types.float64
        _s_nn = _ext(f"sgemm_small_kernel_nn_{_SUFFIX}", _small_type(_f32, True))
        _s_nn0 = _ext(f"sgemm_small_kernel_b0_nn_{_SUFFIX}", _small_type(_f32, False))
        _d_nn = _ext(f"dgemm_small_kernel_nn_{_SUFFIX}", _small_type(_f64, True))
        _d_nn0 = _ext(f"dgemm_small_kernel_b0_nn_{_SUFFIX}", _small_type(_f64, False))

        @njit(cache=True, nogil=True, inline="always")
        def _mm(small, m, n, k, a, lda, b, ldb, beta, c, ldc):  # pragma: no cover - compiled
            """``c = a @ b + beta * c`` (row-major, ``beta`` 0 or 1): OpenBLAS's small-matrix
            kernel when ``small`` (column-major, so it computes ``c.T = b.T @ a.T``: the
            operands swap), else ``_gemm``."""
            if not small:
                _gemm(_NO_TRANS, m, n, k, a, lda, b, ldb, beta, c, ldc)
            elif a.itemsize == 4:
                if beta == 0:
                    _s_nn0(n, m, k, b.ctypes.data, ldb, np.float32(1), a.ctypes.data, lda,
                           c.ctypes.data, ldc)  # fmt: skip
                else:
                    _s_nn(n, m, k, b.ctypes.data, ldb, np.float32(1), a.ctypes.data, lda,
                          np.float32(beta), c.ctypes.data, ldc)  # fmt: skip
            elif beta == 0:
                _d_nn0(n, m, k, b.ctypes.data, ldb, 1.0, a.ctypes.data, lda, c.ctypes.data, ldc)
            else:
                _d_nn(n, m, k, b.ctypes.data, ldb, 1.0, a.ctypes.data, lda, np.float64(beta),
                      c.ctypes.data, ldc)  # fmt: skip

    else:

        @njit(cache=True, nogil=True, inline="always")
        def _mm(small, m, n, k, a, lda, b, ldb, beta, c, ldc):  # pragma: no cover - compiled
            """``c = a @ b + beta * c`` through ``_gemm`` (no small-matrix kernels here)."""
            _gemm(_NO_TRANS, m, n, k, a, lda, b, ldb, beta, c, ldc)

    @njit(cache=True, nogil=True)
    def lstm_forward_rows(  # pragma: no cover - compiled
        acts, hs, cs, tc, whh, wide, small, gt, bs, reverse, r0, r1, k, bias, has_bias
    ):
        """``rnn.LSTMLayer.forward``'s loop over rows ``[r0, r1)``: ``acts`` (T, B, 4H) holds
        the input projections and becomes the activations; ``hs`` / ``cs`` (T + 1, B, H) the
        states in processing order (``[0]`` set by the caller; C-contiguous but for ``hs``'s
        row stride, which may be wider: see ``rnn_support.joint_inputs``); ``tc`` (T, B,
        H) tanh of the cell states by time; ``bs`` the active rows of each step. ``whh``: the
        scaled weight, (H, 4H) transposed when ``wide`` (each step adds ``h @ whh`` into
        ``acts``), else (4H, H) (``whh @ h.T`` into ``gt``, a scratch of at least
        ``4H * (r1 - r0)`` elements, which the cell adds in). ``small`` (with ``wide``):
        the products run on OpenBLAS's small-matrix kernel (see the module docstring).
        ``bias`` (4H,), read when ``has_bias``, is added to each step's rows of ``acts`` just
        before its product (where they are about to be read anyway): the same sums, in the same
        order, as adding it to the whole projection first, without that pass over memory."""
        T = acts.shape[0]
        G = acts.shape[2]
        P = hs.shape[2]
        ld = hs.strides[1] // hs.itemsize  # P, or more where hs is a view of [x, h] rows
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
            if has_bias:
                for r in range(r0, e):
                    row = acts[t, r]
                    for j in range(G):
                        row[j] += bias[j]
            if wide:
                a = acts[t, r0:e]
                _mm(small, n, G, P, hs[s, r0:e], ld, whh, G, 1, a, G)
                lstm_forward(a, cs[s, r0:e], cs[s + 1, r0:e], tc[t, r0:e], hs[s + 1, r0:e], k)
                continue
            g = gt[: G * n].reshape((G, n))
            _gemm(_TRANS, G, n, P, whh, P, hs[s, r0:e], ld, 0, g, n)
            lstm_forward_t(acts[t, r0:e], g, cs[s, r0:e], cs[s + 1, r0:e], tc[t, r0:e],
                           hs[s + 1, r0:e], k)  # fmt: skip

    @njit(cache=True, nogil=True)
    def lstm_forward_joint_rows(  # pragma: no cover - compiled
        xh, w, bias, acts, cs, tc, bs, r0, r1, k
    ):
        """``lstm_forward_rows`` with the input projection inside the steps, forward in time:
        row ``r`` of ``xh[t]`` ((T + 1, B, I + H), see ``rnn_support.joint_inputs``) holds
        ``[x_t, h_t]`` side by side, so one product of a step's rows by ``w`` ((I + H, 4H):
        both weights scaled, transposed and stacked) gives its pre-activations, written into
        ``acts`` (T, B, 4H) over the ``bias`` (4H,) copied there first; the cell writes
        ``h_{t+1}`` into ``xh[t + 1]``'s right-hand columns. Rows past ``bs[t]`` keep their
        state; their ``acts`` stay unwritten (the backward reads active rows only)."""
        T, G = acts.shape[0], acts.shape[2]
        K = xh.shape[2]
        I = K - cs.shape[2]
        w_rows = r1 - r0
        for t in range(T):
            n = min(max(bs[t] - r0, 0), w_rows)
            if n < w_rows:  # finished rows keep their state
                xh[t + 1, r0 + n : r1, I:] = xh[t, r0 + n : r1, I:]
                cs[t + 1, r0 + n : r1] = cs[t, r0 + n : r1]
            if n == 0:
                continue
            e = r0 + n
            a = acts[t, r0:e]
            for r in range(n):
                a[r, :] = bias
            _mm(True, n, G, K, xh[t, r0:e], K, w, G, 1, a, G)  # small kernels: joint_steps
            lstm_forward(a, cs[t, r0:e], cs[t + 1, r0:e], tc[t, r0:e], xh[t + 1, r0:e, I:], k)

    @njit(cache=True, nogil=True)
    def lstm_backward_rows(  # pragma: no cover - compiled
        g_out, has_gout, dh, dc, acts, cs, tc, w_hh, dg, bs, reverse, small, r0, r1, k
    ):
        """``rnn.LSTMLayer.backward``'s loop over rows ``[r0, r1)``: ``dh`` / ``dc`` (B, H)
        enter as the gradients of the final states and leave as those of the initial ones;
        ``g_out`` (T, B, H) the output's gradient by time (read when ``has_gout``); writes the
        pre-activation gradients ``dg`` (T, B, 4H) of the active rows; ``small`` as in the
        forward."""
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
            _mm(small, n, P, G, dgt, G, w_hh, P, 0, dhn, P)
