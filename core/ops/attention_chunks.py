"""Dense attention on large NumPy batches: chunks of the leading axis, one BLAS thread each.

NumPy runs a batched ``q @ k^T`` as one small GEMM per (batch, head) matrix, and a
multithreaded OpenBLAS wakes and synchronises its threads inside every one of them. On a busy
machine that collapses: (512, 8, 128, 64) float32 took 33-45 s forward + backward where one
BLAS thread takes ~1.5 s (the bare ``q @ k^T`` of a (256, 8, 128, 64) batch: 2.3-9.6 s with
the 2-thread pool under load, 0.29 s on one thread). The full-batch scores (256 MiB at batch
512) also stream through memory once per softmax pass.

So a batch whose scores pass ``_MIN_BYTES`` runs in chunks of the leading axis, each holding
about ``_CHUNK_BYTES`` of scores (the softmax passes over a chunk stay in cache), with the BLAS
pool held at one thread and the chunks shared out over ``num_threads()`` workers of ember's
thread pool (NumPy releases the GIL; idle threads sleep instead of spinning). Every chunk runs
the whole-batch code (``attention_math``) on its slice, and the dropout draw is made for the
whole batch first, so results equal the unchunked ones.
"""

from __future__ import annotations

import numpy as np

from ..backend.mkl_gemm import matmul as mm
from ..backend.threads import num_threads, thread_pool
from .dropout_draw import dropout_draw

_MIN_BYTES = 8 << 20  # scores from this size run in chunks
_CHUNK_BYTES = 2 << 20  # scores per chunk
# At several threads, batches of small products (at most ``_SMALL_MACS`` multiply-adds per
# matrix, where OpenBLAS's threads gain nothing and under load wait on each other) run in
# chunks from ``_MIN_BYTES_MT`` of scores, at least one chunk per thread: b8 h4 L128 d32 at 2
# threads, same process, 8.7 -> 3.3 ms a step (1 thread: 3.6). Larger products keep
# OpenBLAS's threads (b4 h1 L512 d128: four one-sample chunks were slower, session 17).
_MIN_BYTES_MT = 512 << 10
_SMALL_MACS = 1 << 21


def _chunks(xp, q, k, v, *more):
    """``[(lo, hi), ...]`` over the leading axis, or None to run whole: only NumPy arrays of
    at least 3 dims whose leading dims all match (no broadcasting between q, k, v, ...)."""
    if xp is not np or q.ndim < 3 or q.shape[0] < 2:
        return None
    lead = q.shape[:-2]
    if any(a is not None and a.shape[:-2] != lead for a in (k, v) + more):
        return None
    n = q.shape[0]
    s_bytes = int(np.prod(lead)) * q.shape[-2] * k.shape[-2] * q.itemsize
    per = max(1, _CHUNK_BYTES * n // s_bytes)
    if s_bytes < _MIN_BYTES:
        nt = num_threads()
        small = q.shape[-2] * k.shape[-2] * q.shape[-1] <= _SMALL_MACS
        if nt < 2 or not small or s_bytes < _MIN_BYTES_MT:
            return None
        per = min(per, -(-n // nt))
    return [(lo, min(lo + per, n)) for lo in range(0, n, per)]


def _rows(a, lo, hi, nd):
    """Rows ``lo:hi`` of the leading axis of an ``nd``-dim batch; an array broadcast along that
    axis (fewer dims, or size 1 there) is passed whole."""
    if a is None or a.ndim < nd or a.shape[a.ndim - nd] == 1:
        return a
    return a[(slice(None),) * (a.ndim - nd) + (slice(lo, hi),)]


def _run(fn, ranges) -> None:
    """``fn(lo, hi)`` for every range: BLAS on one thread, ranges spread over the workers."""
    from ._blas import _get_controller

    controller = _get_controller()
    limiter = controller.limit(limits=1, user_api="blas") if controller else None
    try:
        nt = min(num_threads(), len(ranges))
        if nt < 2:
            for lo, hi in ranges:
                fn(lo, hi)
            return

        def some(i):  # every nt-th range, from the i-th
            for lo, hi in ranges[i::nt]:
                fn(lo, hi)

        futures = [thread_pool().submit(some, i) for i in range(1, nt)]
        try:
            some(0)
        finally:
            for f in futures:
                f.result()
    finally:
        if limiter is not None:
            limiter.restore_original_limits()


def _attend_chunked(qh, kh, vh, scale, bias, safe, dropout_p, generator, out, ranges, causal=False):
    """``_attend`` over chunks of the leading axis (see the module docstring); ``causal`` as
    ``_attend``'s."""
    from . import attention_math  # (it imports this module)

    nd = qh.ndim
    dtype = np.result_type(qh.dtype, kh.dtype)
    shape = qh.shape[:-1] + (kh.shape[-2],)
    qs = np.empty(qh.shape, dtype=qh.dtype)
    p = np.empty(shape, dtype=dtype)
    dropped = 0 < dropout_p < 1
    pd = np.empty(shape, dtype=dtype) if dropped else p
    keep = dropout_draw(generator, np, shape, dtype, dropout_p) if dropped else None
    if out is None:
        out = np.empty(qh.shape[:-1] + (vh.shape[-1],), dtype=np.result_type(dtype, vh.dtype))

    def chunk(lo, hi):
        qc, pc = qs[lo:hi], p[lo:hi]
        np.multiply(qh[lo:hi], qh.dtype.type(scale), out=qc)
        mm(qc, np.swapaxes(kh[lo:hi], -1, -2), out=pc)
        attention_math._scores_softmax_(np, pc, _rows(bias, lo, hi, nd), safe, causal, False)
        pdc = pc
        if dropped:
            pdc = pd[lo:hi]
            np.greater_equal(keep[lo:hi], dropout_p, out=pdc, casting="unsafe")
            pdc *= pc
            pdc *= dtype.type(1 / (1 - dropout_p))
        elif dropout_p >= 1:
            pdc = np.zeros_like(pc)
        attention_math._matmul(np, pdc, vh[lo:hi], out[lo:hi])

    _run(chunk, ranges)
    if dropout_p >= 1:
        pd = np.zeros_like(p)
    return qs, p, pd, out


def _attend_backward_chunked(g_o, g_pd, qs, kh, vh, p, pd, scale, need, outs, ranges):
    """``_attend_backward`` over chunks of the leading axis; the scores' gradient is kept (and
    returned) only when ``need[3]`` asks for it."""
    from . import attention_math

    nd = qs.ndim
    full = []
    for i, like in enumerate((qs, kh, vh)):
        o = outs[i] if i < len(outs) else None
        if o is None and need[i]:
            o = np.empty(like.shape, dtype=like.dtype)
        full.append(o if need[i] else None)
    if need[2] and g_o is None:
        full[2][...] = 0
    keep_ds = len(need) > 3 and need[3]
    ds = np.empty(p.shape, dtype=p.dtype) if keep_ds else None

    def chunk(lo, hi):
        outs_c = tuple(None if o is None else o[lo:hi] for o in full)
        got = attention_math._attend_backward_whole(
            np,
            _rows(g_o, lo, hi, nd),
            _rows(g_pd, lo, hi, nd),
            qs[lo:hi],
            kh[lo:hi],
            vh[lo:hi],
            p[lo:hi],
            pd[lo:hi],
            scale,
            need,
            outs_c,
            split=False,
        )
        if ds is not None:
            ds[lo:hi] = got[3]

    _run(chunk, ranges)
    return full[0], full[1], full[2], ds


class CausalChunks:
    """The blocked causal path (``attention_causal``) per chunk of the leading axis: the
    saved block weights of each chunk."""

    def __init__(self, ranges):
        self.ranges = ranges
        self.weights = [None] * len(ranges)


def causal_forward_chunked(q, k, v, scale, ranges):
    """``attention_causal.causal_forward`` over chunks: returns ``(out, qs, CausalChunks)``."""
    from . import attention_causal

    out = np.empty(q.shape[:-1] + (v.shape[-1],), dtype=np.result_type(q.dtype, v.dtype))
    qs = np.empty(q.shape, dtype=q.dtype)
    saved = CausalChunks(ranges)
    index = {r: i for i, r in enumerate(ranges)}

    def chunk(lo, hi):
        o, s, w = attention_causal.causal_forward(q[lo:hi], k[lo:hi], v[lo:hi], scale, split=False)
        out[lo:hi], qs[lo:hi] = o, s
        saved.weights[index[(lo, hi)]] = w

    _run(chunk, ranges)
    return out, qs, saved


def causal_backward_chunked(g, qs, k, v, saved, scale, need):
    """``attention_causal.causal_backward`` over the chunks of ``causal_forward_chunked``."""
    from . import attention_causal

    full = [np.empty(a.shape, dtype=a.dtype) if n else None for a, n in zip((qs, k, v), need)]

    def chunk(lo, hi):
        w = saved.weights[saved.ranges.index((lo, hi))]
        parts = attention_causal.causal_backward(
            g[lo:hi], qs[lo:hi], k[lo:hi], v[lo:hi], w, scale, need, split=False
        )
        for dst, part in zip(full, parts):
            if dst is not None:
                dst[lo:hi] = part

    _run(chunk, saved.ranges)
    return tuple(full)
