"""Dispatch to the compiled attention row kernels (``_numba_attention``): the softmax of the
scores and its backward, dense or per causal block, split over ``num_threads()`` workers.

They run for NumPy float32 / float64 arrays that are C-contiguous with numba installed and
``EMBER_NUMBA`` not ``0``; every function returns False (or None) otherwise and the caller
keeps its NumPy code. float64 is included so that float64 gradcheck runs through the
kernels. ``split=False`` keeps the work on the calling thread: the batch-chunk path
(``attention_chunks``) already runs one chunk per worker.

Measured on one core, 8192 x 2048 float32 rows (process time): softmax 47.8 -> 22.9 ms, its
backward 69.9 -> 12.1 ms (docs/kernels.md).
"""

from __future__ import annotations

import os

import numpy as np

from ._kernel_split import split_call

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# below these exp() is subnormal: the kernels flush it to zero (``_numba_attention._exp_under``)
_UNDER = {np.dtype(np.float32): np.float32(-87.0), np.dtype(np.float64): np.float64(-708.0)}
_mod = None  # None: not looked up yet; False: unavailable or switched off


def kernels(xp, *arrays):
    """The ``_numba_attention`` module when it applies to ``arrays``, else None."""
    global _mod
    if xp is not np:
        return None
    for a in arrays:
        if a.dtype not in _DTYPES or not a.flags.c_contiguous or a.size == 0:
            return None
    if _mod is None:
        _mod = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_attention  # (numba is an optional extra, "fast")

            if _numba_attention.AVAILABLE:
                _mod = _numba_attention
    return _mod or None


def available(xp, dtype) -> bool:
    """Whether the kernels run for arrays of ``xp`` and ``dtype`` (C-contiguous, non-empty)."""
    return xp is np and np.dtype(dtype) in _DTYPES and kernels(xp) is not None


def _run(fn, n, item, args_for, split):
    if split:
        split_call(fn, n, item, args_for)
    else:
        fn(*args_for(0, n))


def softmax_(xp, s, masked: bool, safe: bool, split: bool = True) -> bool:
    """Row softmax of ``s`` in place (``attention_math._softmax_``'s contract); False when the
    kernel does not apply (nothing was done)."""
    k = kernels(xp, s)
    if k is None:
        return False
    s2 = s.reshape(-1, s.shape[-1])
    lo = _UNDER[s.dtype]
    _run(k.softmax_, s2.shape[0], s2.shape[1], lambda a, b: (s2[a:b], masked, safe, lo), split)
    return True


def softmax_grad(xp, g_pd, p, pd, fresh: bool, split: bool = True):
    """``t - p * rowsum(t)`` with ``t = g_pd * pd``: written over ``g_pd`` when ``fresh`` (the
    caller's own temporary), else into a new array; None when the kernel does not apply."""
    if g_pd.shape != p.shape or pd.shape != p.shape or kernels(xp, g_pd, p, pd) is None:
        return None
    if not (g_pd.dtype == p.dtype == pd.dtype):
        return None
    ds = g_pd if fresh else g_pd.copy()
    d = p.shape[-1]
    d2, p2, pd2 = (a.reshape(-1, d) for a in (ds, p, pd))
    _run(_mod.softmax_grad_, d2.shape[0], d, lambda a, b: (d2[a:b], p2[a:b], pd2[a:b]), split)
    return ds


def causal_softmax_(s, i0: int, split: bool = True) -> bool:
    """The scores (..., R, C) of query rows ``[i0, i0 + R)`` against keys ``[0, C)`` in place:
    the softmax over each row's keys ``[0, i0 + r]``, zeros after. False if not applicable."""
    k = kernels(np, s)
    if k is None:
        return False
    s3 = s.reshape((-1,) + s.shape[-2:])
    lo = _UNDER[s.dtype]
    _run(k.causal_softmax_, s3.shape[0], s3[0].size, lambda a, b: (s3[a:b], i0, lo), split)
    return True


def causal_softmax_grad_(ds, p, i0: int, split: bool = True) -> bool:
    """``ds`` (the gradient of the weights ``p`` of one causal block) in place becomes the
    scores' gradient. False if not applicable."""
    if ds.shape != p.shape or ds.dtype != p.dtype or kernels(np, ds, p) is None:
        return False
    d3, p3 = (a.reshape((-1,) + a.shape[-2:]) for a in (ds, p))
    _run(
        _mod.causal_softmax_grad_,
        d3.shape[0],
        d3[0].size,
        lambda a, b: (d3[a:b], p3[a:b], i0),
        split,
    )
    return True


def causal_exp_(s, i0: int, inv, split: bool = True) -> bool:
    """``causal_softmax_`` without the scale pass: the block's rows become ``exp(s - max)``
    (zeros after each row's last key) and ``inv`` (R,) their reciprocal sums. False (nothing
    done) if not applicable."""
    k = kernels(np, s)
    if k is None or inv.dtype != s.dtype:
        return False
    s3 = s.reshape((-1,) + s.shape[-2:])
    inv2 = inv.reshape(s3.shape[:2])
    lo = _UNDER[s.dtype]
    _run(
        k.causal_exp_,
        s3.shape[0],
        s3[0].size,
        lambda a, b: (s3[a:b], i0, lo, inv2[a:b]),
        split,
    )
    return True


def causal_exp_grad_(ds, e, i0: int, inv, split: bool = True) -> bool:
    """``ds`` (``inv``-scaled rows of the weights' gradient) in place becomes the scores'
    gradient of ``causal_exp_``'s block ``e``. False if not applicable."""
    if ds.shape != e.shape or ds.dtype != e.dtype or kernels(np, ds, e) is None:
        return False
    d3, e3 = (a.reshape((-1,) + a.shape[-2:]) for a in (ds, e))
    inv2 = inv.reshape(d3.shape[:2])
    _run(
        _mod.causal_exp_grad_,
        d3.shape[0],
        d3[0].size,
        lambda a, b: (d3[a:b], e3[a:b], i0, inv2[a:b]),
        split,
    )
    return True
