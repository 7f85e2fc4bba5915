"""Products ``a @ w.T`` and ``a @ w`` by the channels-last convolution kernel with one tap
(issue 23, session 26), for the recurrent layers' whole-sequence products.

``_numba_conv_cl.forward_cl`` computes ``y[j, o] = sum_c x[pos[j] + c] * wk[o // V, 0, c, o %
V]``: with one tap it is a matrix product whose left rows are the positions. It runs at 51-55 G
multiply-adds/s on one thread here, OpenBLAS's ``sgemm`` at 43-50 on the same shapes, weight
re-layout included (1 thread, ms: 2048x128 @ 128x1024 (the lstm workload's projection) 6.24 ->
5.22; 2048x1024 @ 1024x128 (its input gradient) 5.68 -> 4.89; 2048x256 @ 256x1024 11.3 ->
9.97; 2 threads 2.88 -> 2.60, 2.80 -> 2.42, 5.65 -> 5.06).

- ``matmul_cl(a, w, transpose_w)``: ``a @ w.T`` (``transpose_w``, ``w`` (N, K)) or ``a @ w``
  (``w`` (K, N)) as a new C-contiguous (M, N) array, or None where it does not apply
  (``ENABLED``; NumPy float32 / float64 of one dtype; ``a`` 2-D with contiguous rows at any
  row stride; N in whole vectors; at least ``MIN_MACS`` multiply-adds; numba's kernels loaded).
  Each output is summed over K in order within its lane: the same bits at 1 and 2 threads.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..backend.threads import num_threads
from . import conv_direct, conv_direct_cl

ENABLED = True  # False: NumPy's (OpenBLAS's) products, as before (A/B)
MIN_MACS = 1 << 24
_OFFS = np.zeros(1, dtype=np.int64)  # one tap


def _run(name, macs, *args) -> None:
    conv_direct.with_kernel_threads(num_threads(), conv_direct_cl._call, name, macs, *args)


def matmul_cl(a, w, transpose_w: bool):
    """``a @ w.T`` or ``a @ w`` by the kernel, or None (module docstring)."""
    if not ENABLED or type(a) is not np.ndarray or type(w) is not np.ndarray:
        return None
    dt = a.dtype
    if dt.char not in "fd" or w.dtype != dt or a.ndim != 2 or w.ndim != 2:
        return None
    m, k = a.shape
    n = w.shape[0] if transpose_w else w.shape[1]
    if (w.shape[1] if transpose_w else w.shape[0]) != k or m == 0 or k == 0:
        return None
    v = conv_direct_cl._vec_lanes(dt.itemsize)
    if n % v or m * k * n < MIN_MACS or a.strides[1] != dt.itemsize or a.strides[0] <= 0:
        return None
    if a.strides[0] % dt.itemsize or not conv_direct_cl.available():
        return None
    rs = a.strides[0] // dt.itemsize
    if rs < k:
        return None
    # the weight as the kernel's blocks: (N / V, 1, K, V)
    wk = conv_direct_cl._aligned((n // v, 1, k, v), dt)
    w3 = np.ascontiguousarray(w).reshape(w.shape[0], w.shape[1], 1)
    _run("weight_layout", m * k * n, w3, not transpose_w, wk)
    # a's rows in one flat view from its first value (the kernel reads each row's k values)
    flat = as_strided(a, shape=((m - 1) * rs + k,), strides=(dt.itemsize,))
    jm = conv_direct_cl._trim(m, conv_direct_cl.CL_P)
    pos = np.arange(jm, dtype=np.int64) * rs
    pos[m:] = 0  # padding rows read row 0; their outputs are dropped
    y = conv_direct_cl._aligned((jm, n), dt)
    cb = conv_direct_cl._channel_block(k, conv_direct_cl.CL_VEC_BYTES)
    _run("forward_cl", m * k * n, flat, wk, _OFFS, pos, cb, n, y)
    return y[:m]
