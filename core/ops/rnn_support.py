"""Support for the fused recurrent layers in ``rnn``: the time-step order, active-row counts of
packed batches, the all-steps input projection, the weight gradients, initial states and
output assembly, and the packed <-> padded (time-major) conversions as Functions. Re-exported
by ``rnn``.
"""

from __future__ import annotations

import os

import numpy as np

from ..autograd.function import Function
from ..backend.mkl_gemm import active as mkl_active
from ..backend.mkl_gemm import matmul as mm
from ..backend.threads import num_threads, run_parts
from .gemm_cl import matmul_cl

# ---- compiled cells -------------------------------------------------------------------------
_numba = None  # the ``_numba_rnn`` module once loaded; False when unavailable
# float32 is the production dtype; the tests add float64 so the gradchecks run the kernels
_COMPILED_DTYPES = (np.dtype(np.float32),)


def cell_kernels(xp, dtype):
    """``(module, constants)`` of the compiled cells (``_numba_rnn``) for NumPy arrays of a dtype
    in ``_COMPILED_DTYPES`` when numba is installed and ``EMBER_NUMBA`` is not ``0``; else
    ``(None, None)`` and the NumPy cells run."""
    global _numba
    if xp is not np or np.dtype(dtype) not in _COMPILED_DTYPES:
        return None, None
    if _numba is None:
        _numba = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_rnn  # (numba is an optional extra, "fast")

            if _numba_rnn.AVAILABLE:
                _numba = _numba_rnn
    return (_numba, _numba.consts(dtype)) if _numba else (None, None)


_seq = None  # the ``_numba_rnn_seq`` module once loaded; False when unavailable
# With several threads, per-step products from ``mkl_gemm.MULTI_FLOPS`` up of at most this many
# rows take the compiled loop as well (MKL's sequential GEMM): such a product is a read of the
# whole weight for a few rows, which OpenBLAS's two threads did not speed up (8 x 1024 @
# 1024 x 4096 at 2 threads: 1.5-2.0 ms OpenBLAS, 1.4-2.0 MKL; its backward 1.2 against 0.9),
# and the Python loop around them cost more: LSTM n8 T32 1024->1024 L4 at 2 threads, wall,
# with the tiled transpose, 749 -> 606 ms (1 thread 620). From 16 rows OpenBLAS's threads win
# (16: 1.6 vs 2.4 ms, 32: 3.2 vs 5.7). 0 restores the old rule (for A/B runs).
SEQ_MULTI_ROWS = 8


def sequence_kernels(xp, dtype, step_flops: int, rows: int = 0):
    """``(module, constants)`` of the compiled whole-sequence LSTM loops (``_numba_rnn_seq``)
    where they apply: the compiled cells do (``cell_kernels``), MKL is loaded and would take
    the per-step product (``mkl_gemm``'s rules), or that product has at most
    ``SEQ_MULTI_ROWS`` ``rows`` (the batch); else ``(None, None)``."""
    global _seq
    kern, kc = cell_kernels(xp, dtype)
    if kern is None or _seq is False:
        return None, None
    from ..backend import mkl_gemm

    if not mkl_gemm._ready(step_flops) or (
        step_flops >= mkl_gemm.MULTI_FLOPS
        and mkl_gemm.num_threads() > 1
        and not 0 < rows <= SEQ_MULTI_ROWS
    ):
        return None, None
    if _seq is None:
        from . import _numba_rnn_seq

        _seq = _numba_rnn_seq
    return _seq, kc


# The ``_numba_rnn_blas`` module once loaded; False when unavailable or off
# (``EMBER_LSTM_COMPILED_LOOP=0``). Session 24 found the loop loaded from numba's cache rounding
# otherwise than compiled in the process; the cause was reassociation in the cells it calls (see
# ``_numba_rnn``'s ``_jit``), and both now round as the Python loop does.
_rows = False if os.environ.get("EMBER_LSTM_COMPILED_LOOP", "1") == "0" else None
# At several threads, a batch of at least this many rows a thread splits its recurrence by rows
# (``row_bounds``); smaller parts leave the steps to the Python loop and BLAS's own threads.
ROWS_PER_PART = 8
# ... and only while the recurrent weight is at most this many bytes: each part reads all of
# it every step (the lstm workload's H256 weight is 1 MiB).
ROWS_SPLIT_WEIGHT = 1 << 20
# Weights up to this many bytes step as ``h @ w.T`` into the pre-activations (see
# ``rows_forward``); it fits a core's L2 (1 MiB here) beside a step's other arrays.
WIDE_WEIGHT = 1 << 18
# Where a row range runs on one thread, its products call OpenBLAS's small-matrix kernels
# (``_numba_rnn_blas.SMALL``), which do not repack the weight on every step;
# ``EMBER_LSTM_SMALL_GEMM=0`` keeps ``sgemm`` (for A/B runs).
SMALL_GEMM = os.environ.get("EMBER_LSTM_SMALL_GEMM", "1") != "0"
# ... for recurrent weights of this many bytes (1 thread, us a step forward / backward, sgemm
# against small kernel, session 25): H64 (64 KiB) 32 rows 14 / 10 against 14 / 14; H96 28 / 28
# against 25 / 25; H128 48 / 50 against 41 / 41; H256 189 / 201 against 159 / 155; H512 749 /
# 837 against 640 / 670; H724 (8 MiB) 1808 / 1922 against 1475 / 1337; H1024 (16 MiB, read
# from memory every step) 8 rows 2093 / 2486 against 2696 / 2814: there the packed stream wins.
SMALL_WEIGHT = (1 << 17, 1 << 23)
# The layer's forward on the small-matrix kernels runs its input projection inside the steps
# (``rows_forward_joint``); ``EMBER_LSTM_JOINT_STEPS=0`` keeps the all-steps projection.
JOINT_STEPS = os.environ.get("EMBER_LSTM_JOINT_STEPS", "1") != "0"


def row_kernels(xp, dtype):
    """``(module, constants)`` of the compiled whole-sequence LSTM loops on NumPy's OpenBLAS
    (``_numba_rnn_blas``) where the compiled cells apply and NumPy's OpenBLAS exports its
    CBLAS symbols; else ``(None, None)``."""
    global _rows
    kern, kc = cell_kernels(xp, dtype)
    if kern is None or _rows is False:
        return None, None
    if _rows is None:
        from . import _numba_rnn_blas

        _rows = _numba_rnn_blas if _numba_rnn_blas.AVAILABLE else False
    return (_rows, kc) if _rows else (None, None)


def row_bounds(B: int, weight_bytes: int, step_flops: int = 0) -> list | None:
    """Row ranges of the batch, one per thread (``[0, B]`` at one thread), for
    ``_numba_rnn_blas``'s loops. Where a split does not pay (parts under ``ROWS_PER_PART``
    rows, a weight over ``ROWS_SPLIT_WEIGHT``), one range ``[0, B]`` whose products use
    BLAS's own threads when they are large (from ``_blas.SERIAL_FLOPS``, where the Python
    loop keeps BLAS's pool too: the compiled loop only saves its Python), else None: the
    Python loop, whose ``step_blas`` picks the thread count of small products by measurement."""
    nt = num_threads()
    if nt < 2:
        return [0, B]
    nt = min(nt, B // ROWS_PER_PART)
    if nt < 2 or weight_bytes > ROWS_SPLIT_WEIGHT:
        from ._blas import SERIAL_FLOPS

        return [0, B] if step_flops >= SERIAL_FLOPS else None
    return [B * i // nt for i in range(nt + 1)]


def run_rows(fn, bounds) -> None:
    """``fn(lo, hi)`` for each row range of ``bounds``; several ranges run on the worker pool
    (``run_parts``) with BLAS held to one thread, so that each part's products stay on its own
    thread."""
    if len(bounds) == 2:
        fn(bounds[0], bounds[1])
        return
    from ._blas import _get_controller

    controller = _get_controller()
    limiter = controller.limit(limits=1, user_api="blas") if controller else None
    try:
        run_parts(fn, bounds)
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


def row_plan(xp, dtype, B: int, w_hh):
    """``(module, row bounds)`` of ``_numba_rnn_blas``'s loops for an LSTM layer (no
    projection, no MKL loop) of batch ``B``, or None where they do not apply."""
    rk, _ = row_kernels(xp, dtype)
    bounds = None if rk is None else row_bounds(B, w_hh.size * w_hh.itemsize, 2 * B * w_hh.size)
    return None if bounds is None else (rk, bounds)


def _small(plan, w_hh) -> bool:
    """Whether ``plan``'s loops call OpenBLAS's small-matrix kernels: where they exist, the
    weight's size is within ``SMALL_WEIGHT`` and each row range runs on one thread (several
    ranges, or one thread in all); one range at several threads keeps ``sgemm``'s threads."""
    rk, bounds = plan
    lo, hi = SMALL_WEIGHT
    return (
        SMALL_GEMM
        and rk.SMALL
        and lo <= w_hh.size * w_hh.itemsize <= hi
        and (len(bounds) > 2 or num_threads() == 1)
    )


def rows_forward(plan, acts, hs, cs, tanh_c, w_hh, s, batch_sizes, reverse, kc, bias=None):
    """``LSTMLayer.forward``'s recurrence on ``plan`` (``row_plan``); returns the activations
    (``acts`` made contiguous, written in place). A weight of up to ``WIDE_WEIGHT`` bytes is
    transposed once and each step adds ``h @ w.T`` into the step's pre-activations (32 rows,
    H128, 1 thread, per step: 53 us against 46 us for ``w @ h.T`` plus 9.5 us for the cell to
    add that in at a stride); a larger one steps as ``w @ h.T`` (32 rows, H256: 244 against
    183 + 19 us; and no transposed copy of the weight). With the small-matrix kernels
    (``_small``) every weight steps as ``h @ w.T`` (32 rows, H256: 159 us). ``bias`` (4H,),
    when given, is the (scaled) bias the projection ``acts`` left out: each step adds it to its
    rows just before its product, the same sums as ``acts += bias`` first (B32 T64 H256, 1
    thread: that pass over the 8 MiB projection was 0.9 ms; session 25, h7)."""
    rk, bounds = plan
    T, B, G = acts.shape
    acts = np.ascontiguousarray(acts)
    bs = _sizes(batch_sizes, T, B)
    small = _small(plan, w_hh)
    wide = small or w_hh.size * w_hh.itemsize <= WIDE_WEIGHT
    w = scaled_transpose(np, w_hh, s) if wide else np.ascontiguousarray(w_hh * s[:, None])
    rev = bool(reverse)
    has_b = bias is not None
    b = np.ascontiguousarray(bias, dtype=acts.dtype) if has_b else np.empty(0, acts.dtype)

    def part(lo, hi):
        gt = np.empty(0 if wide else G * (hi - lo), dtype=acts.dtype)
        args = (w, wide, small, gt, bs, rev, lo, hi, kc, b, has_b)
        rk.lstm_forward_rows(acts, hs, cs, tanh_c, *args)

    run_rows(part, bounds)
    return acts


def joint_steps(plan, w_ih, w_hh) -> bool:
    """Whether ``rows_forward_joint`` runs the layer (``EMBER_LSTM_JOINT_STEPS=0``: never, for
    A/B runs): the rows' products are the small-matrix kernels (``_small``) and the stacked
    weight ``[w_ih, w_hh]`` is within ``SMALL_WEIGHT`` too."""
    lo, hi = SMALL_WEIGHT
    nbytes = (w_ih.size + w_hh.size) * w_hh.itemsize
    return JOINT_STEPS and _small(plan, w_hh) and lo <= nbytes <= hi


def rows_forward_joint(plan, xh, w_ih, w_hh, s, cs, tanh_c, batch_sizes, kc, bias=None):
    """``LSTMLayer.forward``'s input projection and recurrence together, on ``joint_inputs``'
    buffer ``xh`` (forward in time): each step multiplies its rows ``[x_t, h_t]`` by the
    stacked weight ``[w_ih, w_hh].T`` scaled by ``s``, over the (scaled) ``bias``. Returns the
    activations (T, B, 4H). The all-steps projection this replaces wrote 4H floats a row and
    step to memory for the loop to read back; here they are made, used and written once, in
    cache (B32 T64 128->256, the layer's forward: see docs/kernels.md, session 28)."""
    rk, bounds = plan
    T, B = xh.shape[0] - 1, xh.shape[1]
    I, G = w_ih.shape[1], w_hh.shape[0]
    kern, _ = cell_kernels(np, w_hh.dtype)
    w = np.empty((I + w_hh.shape[1], G), dtype=w_hh.dtype)
    kern.scaled_transpose(w_ih, s, w[:I])  # the tiled transposes (see scaled_transpose)
    kern.scaled_transpose(w_hh, s, w[I:])
    b = np.zeros(G, w.dtype) if bias is None else np.ascontiguousarray(bias, dtype=w.dtype)
    acts = np.empty((T, B, G), dtype=w.dtype)
    args = (xh, w, b, acts, cs, tanh_c, _sizes(batch_sizes, T, B))
    run_rows(lambda lo, hi: rk.lstm_forward_joint_rows(*args, lo, hi, kc), bounds)
    return acts


def rows_backward(plan, g_out, dh, dc, acts, cs, tanh_c, w_hh, dG, batch_sizes, reverse, kc):
    """``LSTMLayer.backward``'s recurrence on ``plan`` (``row_plan``): ``dh`` / ``dc`` become
    the initial states' gradients, ``dG`` the pre-activations'; ``g_out`` may be None."""
    rk, bounds = plan
    T, B = acts.shape[0], acts.shape[1]
    go = dh.reshape(1, B, -1) if g_out is None else g_out
    w = np.ascontiguousarray(w_hh)
    args = (go, g_out is not None, dh, dc, acts, cs, tanh_c, w, dG, _sizes(batch_sizes, T, B))
    rev, small = bool(reverse), _small(plan, w_hh)
    run_rows(lambda lo, hi: rk.lstm_backward_rows(*args, rev, small, lo, hi, kc), bounds)


def scaled_transpose(xp, w, s):
    """``(w * s[:, None]).T`` as a C-contiguous array: the compiled tiled copy
    (``_numba_rnn.scaled_transpose``) where the cells are compiled and the weight is large (a
    4096 x 1024 LSTM weight: 31 -> 8 ms a layer and step), NumPy otherwise. Equal bitwise."""
    kern, _ = cell_kernels(xp, w.dtype)
    if kern is None or w.ndim != 2 or w.size < _TILED_MIN or s.dtype != w.dtype:
        return xp.ascontiguousarray((w * s[:, None]).T)
    out = np.empty((w.shape[1], w.shape[0]), dtype=w.dtype)
    kern.scaled_transpose(w, s, out)
    return out


# weights from this many elements take the tiled transpose (below it fits in L2 either way)
_TILED_MIN = 1 << 18


def _sizes(batch_sizes, T: int, B: int):
    """The active rows of every time step as an int64 array (``B`` each without packing)."""
    if batch_sizes is None:
        return np.full(T, B, dtype=np.int64)
    return np.asarray(batch_sizes, dtype=np.int64)


def _steps(T: int, reverse: bool):
    return range(T - 1, -1, -1) if reverse else range(T)


def _active(batch_sizes, t: int, B: int) -> int:
    return B if batch_sizes is None else int(batch_sizes[t])


def _mm_cl(a, w, transpose_w: bool):
    """``a @ w.T`` / ``a @ w`` by the channels-last kernel (``gemm_cl``) where it applies and
    MKL is not active, else ``mkl_gemm.matmul``."""
    out = None if mkl_active() else matmul_cl(a, w, transpose_w)
    if out is None:
        out = mm(a, w.T if transpose_w else w)
    return out


def _project(x, w_ih, bias):
    """``x @ w_ih.T + bias`` for all time steps at once: (T, B, I) -> (T, B, G)."""
    T, B, _ = x.shape
    out = _mm_cl(x.reshape(T * B, -1), w_ih, True)
    if bias is not None:
        out += bias
    return out.reshape(T, B, -1)


def _weight_grads(ctx, x, g_pre, hprev, w_ih, g_hh=None):
    """Input/weight/bias gradients from the per-step pre-activation gradients, one matmul each.

    ``g_pre`` (T, B, G) is the gradient of the input projection; ``g_hh`` (default ``g_pre``) is
    the gradient of the hidden projection ``h @ w_hh.T + b_hh``; ``hprev`` (T, B, P) the state
    that entered each step.
    """
    need = ctx.needs_input_grad
    T, B, G = g_pre.shape
    g2 = g_pre.reshape(T * B, G)
    gh2 = g2 if g_hh is None else g_hh.reshape(T * B, G)
    dx = _mm_cl(g2, w_ih, False).reshape(x.shape) if need[0] else None
    dw_ih = mm(g2.T, x.reshape(T * B, -1)) if need[3] else None
    dw_hh = mm(gh2.T, hprev.reshape(T * B, -1)) if need[4] else None
    db_ih = g2.sum(0) if need[5] else None
    if not need[6]:
        db_hh = None
    elif g_hh is None and db_ih is not None:  # the same sum (LSTM, RNN): one pass, one copy
        db_hh = db_ih.copy()
    else:
        db_hh = gh2.sum(0)
    return dx, dw_ih, dw_hh, db_ih, db_hh


def joint_inputs(ctx, x, rows, reverse, P: int):
    """``(xh, x, hs)`` where ``LSTMLayer`` can run on one (T + 1, B, I + P) buffer ``xh``
    whose rows hold ``[x_t, h_t]`` side by side: ``x`` copied into its left-hand columns (the
    returned ``x`` is that view), the states ``hs`` its right-hand ones, which the compiled row
    loops write at that row stride. Applies to those loops (``rows``), forward in time, a
    plain array input and the class's own ``_weight_grads``; else None.

    The backward then multiplies ``dG.T`` once by ``[x, h]`` for both weight gradients
    (``joint_weight_grads``): B32 T64 128->256, 1 thread, 18.2 ms against 19.4 for the two
    products; the copy of ``x`` replaces the one ``_project``'s reshape made of a
    batch-first input (session 25, h7)."""
    if rows is None or reverse or type(x) is not np.ndarray or x.ndim != 3:
        return None
    if type(ctx)._weight_grads_fn is not _weight_grads:  # e.g. ember.compile's fused layer
        return None
    T, B, I = x.shape
    xh = np.empty((T + 1, B, I + P), dtype=x.dtype)
    xh[:T, :, :I] = x
    return xh, xh[:T, :, :I], xh[:, :, I:]


def joint_weight_grads(ctx, xh, g_pre, w_ih):
    """``_weight_grads`` on ``joint_inputs``' buffer ``xh``: ``dW_ih`` and ``dW_hh`` from one
    product ``dG.T @ [x, h]`` where both are needed."""
    need = ctx.needs_input_grad
    T, B, G = g_pre.shape
    I = w_ih.shape[1]
    x, hprev = xh[:T, :, :I], xh[:T, :, I:]
    if not (need[3] and need[4]):
        return _weight_grads(ctx, x, g_pre, hprev, w_ih)
    # dx and the biases as ``_weight_grads`` gives them; the two weights from one product
    rest = _Need(need[0], False, False, need[5], need[6])
    dx, _, _, db_ih, db_hh = _weight_grads(rest, x, g_pre, hprev, w_ih)
    dw = mm(g_pre.reshape(T * B, G).T, xh[:T].reshape(T * B, -1))
    return dx, np.ascontiguousarray(dw[:, :I]), np.ascontiguousarray(dw[:, I:]), db_ih, db_hh


class _Need:
    """Adapts a layer's needs_input_grad to ``_weight_grads``' LSTM-style argument positions."""

    __slots__ = ("needs_input_grad",)

    def __init__(self, x, w_ih, w_hh, b_ih, b_hh):
        self.needs_input_grad = (x, None, None, w_ih, w_hh, b_ih, b_hh)


def _init_state(dst, init):
    if init is None:
        dst[...] = 0
    else:
        dst[...] = init


def _by_time(hs, reverse):
    """The state entering the step at each time index, from states kept in processing order."""
    return hs[-2::-1] if reverse else hs[:-1]


def _outputs(xp, hs, batch_sizes, reverse):
    """The (T, B, P) output, by time, from states in processing order (a fresh array)."""
    out = hs[:0:-1] if reverse else hs[1:]
    out = xp.ascontiguousarray(out) if reverse else out.copy()
    return out if batch_sizes is None else _zero_inactive(xp, out, batch_sizes)


def _zero_inactive(xp, out, batch_sizes):
    for t, n in enumerate(batch_sizes):
        out[t, int(n) :] = 0
    return out


# ---- packed <-> padded (time-major) ------------------------------------------------------------
def packed_indices(xp, batch_sizes, B: int):
    """Flat row indices into a (T * B, ...) padded array for each packed row, in packed order."""
    bs = np.asarray(batch_sizes, dtype=np.int64)
    starts = np.repeat(np.arange(len(bs), dtype=np.int64) * B, bs)
    offsets = np.arange(int(bs.sum()), dtype=np.int64) - np.repeat(np.cumsum(bs) - bs, bs)
    idx = starts + offsets
    return idx if xp is np else xp.asarray(idx)


class PackedToPadded(Function):
    """(N, *F) packed rows -> (T, B, *F) time-major padded array (zeros elsewhere)."""

    @staticmethod
    def forward(ctx, data, batch_sizes, padding_value=0.0):
        xp = ctx.xp
        T, B = len(batch_sizes), int(batch_sizes[0])
        idx = packed_indices(xp, batch_sizes, B)
        out = xp.full((T * B,) + data.shape[1:], padding_value, dtype=data.dtype)
        out[idx] = data
        ctx.idx = idx
        return out.reshape((T, B) + data.shape[1:])

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape((-1,) + grad.shape[2:])[ctx.idx], None, None


class PaddedToPacked(Function):
    """(T, B, *F) time-major padded array -> (N, *F) packed rows."""

    @staticmethod
    def forward(ctx, padded, batch_sizes):
        xp = ctx.xp
        T, B = padded.shape[0], padded.shape[1]
        idx = packed_indices(xp, batch_sizes, B)
        ctx.idx, ctx.shape = idx, padded.shape
        return padded.reshape((T * B,) + padded.shape[2:])[idx]

    @staticmethod
    def backward(ctx, grad):
        xp = ctx.xp
        shape = ctx.shape
        out = xp.zeros((shape[0] * shape[1],) + shape[2:], dtype=grad.dtype)
        out[ctx.idx] = grad
        return out.reshape(shape), None
