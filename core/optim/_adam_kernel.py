"""Adam's update on the CPU as one compiled pass over the four arrays (numba), split over the
threads without Python between the pieces.

The NumPy update (``adam._adam_update``) makes about twelve passes, so it runs on 128 KiB
pieces (``backend.threads.parallel_apply``), each a dozen ufunc calls from Python. At two
threads both workers ran those calls and queued on the GIL for them: the transformer
workload's step took 1.42 ms at one thread and 3.21 ms at two (interleaved, same process). One
pass per element reads the parameter, gradient and two moments once and writes three of them;
it splits over the threads only for large parameters (``MIN_SPLIT``): below, the update is
bound by memory and a second thread gained nothing.

The kernel does NumPy's operations in NumPy's order and dtype (the Python-float
hyper-parameters rounded to the array's dtype first, as NumPy's scalar rule does, no fused
multiply-add), so the result is bitwise the NumPy update's (``tests/test_workloads_s24.py``).
It applies to C-contiguous float32 / float64 NumPy arrays without amsgrad; ``EMBER_NUMBA=0``
or no numba keeps the NumPy update.
"""

from __future__ import annotations

import os

import numpy as np

from ..backend.threads import num_threads, run_parts

try:
    from numba import njit
except ImportError:  # numba is optional
    njit = None

AVAILABLE = njit is not None and os.environ.get("EMBER_NUMBA", "1") != "0"
# Elements a part from which the update splits over the threads: alone, 1M float32 took
# 0.57 ms on one thread and 0.38 on two, 256K 0.144 and 0.146; inside the mlp step (a 401K
# weight) splitting cost 0.2 ms at two threads (4.40 -> 4.61 ms a step, interleaved)
MIN_SPLIT = 1 << 19
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_BLOCK = 512  # elements a block (a global: a compile-time constant in the kernel)


def _adam_rows(p, g, m, v, w1, small, beta2, w2, bc2, eps, neg_step, lo, hi):  # pragma: no cover
    # _lerp_(m, g, w1): (g - m) * w1 added when |w1| < 0.5, else g - (g - m) * (1 - w1);
    # _addcmul_(v, g, g, w2) after v *= beta2: (g * w2) * g; _addcdiv_(p, m, denom, -step).
    # In blocks through a local buffer: LLVM vectorises these loops (8 float32 sqrt / div a
    # step), not one loop that also writes p (1M float32: 0.69 ms against 3.35 ms)
    tmp = np.empty(_BLOCK, p.dtype)
    for s in range(lo, hi, _BLOCK):
        e = min(s + _BLOCK, hi)
        pb, gb, mb, vb = p[s:e], g[s:e], m[s:e], v[s:e]
        if small:
            for j in range(e - s):
                gj = gb[j]
                mj = mb[j] + (gj - mb[j]) * w1
                mb[j] = mj
                vj = vb[j] * beta2
                vj = vj + gj * w2 * gj
                vb[j] = vj
                tmp[j] = mj * neg_step / (np.sqrt(vj) / bc2 + eps)
        else:
            for j in range(e - s):
                gj = gb[j]
                mj = gj - (gj - mb[j]) * w1
                mb[j] = mj
                vj = vb[j] * beta2
                vj = vj + gj * w2 * gj
                vb[j] = vj
                tmp[j] = mj * neg_step / (np.sqrt(vj) / bc2 + eps)
        for j in range(e - s):
            pb[j] = pb[j] + tmp[j]


_kernel = njit(cache=True, nogil=True, error_model="numpy")(_adam_rows) if AVAILABLE else None


def applies(*arrays) -> bool:
    """Whether :func:`adam_` runs for these arrays (param, grad, exp_avg, exp_avg_sq)."""
    if _kernel is None:
        return False
    a0 = arrays[0]
    return all(
        type(a) is np.ndarray and a.dtype == a0.dtype and a.size == a0.size and a.flags.c_contiguous
        for a in arrays
    ) and (a0.dtype in _DTYPES)


def adam_(param, g, exp_avg, exp_avg_sq, *, beta1, beta2, eps, step_size, bias_correction2_sqrt):
    """Adam's update in place (``adam._adam_update`` without amsgrad), bitwise its result."""
    t = param.dtype.type
    w1 = 1 - beta1
    small = abs(w1) < 0.5
    scalars = (
        t(w1 if small else 1.0 - w1),
        small,
        t(beta2),
        t(1 - beta2),
        t(bias_correction2_sqrt),
        t(eps),
        t(-step_size),
    )
    flats = [a.reshape(-1) for a in (param, g, exp_avg, exp_avg_sq)]
    n = flats[0].size
    nt = min(num_threads(), max(1, n // MIN_SPLIT))
    if nt < 2:
        _kernel(*flats, *scalars, 0, n)
        return
    run_parts(
        lambda lo, hi: _kernel(*flats, *scalars, lo, hi), [n * i // nt for i in range(nt + 1)]
    )
