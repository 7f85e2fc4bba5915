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


class ClProduct:
    """``a @ w.T`` (``transpose_w``, ``w`` (N, K)) or ``a @ w`` (``w`` (K, N)) for the rows
    ``a`` of each call, ``w`` laid out once as the kernel's blocks (N / V, 1, K, V)
    (``_numba_conv_cl.weight_layout``); ``rows``: the rows a call is expected to have, which
    picks the re-layout's parallel variant. N must be whole vectors, the dtype float32 or
    float64, numba's kernels loaded (the callers check: ``matmul_cl``, ``rnn_stream``)."""

    def __init__(self, w, transpose_w: bool, rows: int):
        self.k, self.m = (w.shape[1], w.shape[0]) if transpose_w else w.shape
        dt = w.dtype
        v = conv_direct_cl._vec_lanes(dt.itemsize)
        self.wk = conv_direct_cl._aligned((self.m // v, 1, self.k, v), dt)
        w3 = np.ascontiguousarray(w).reshape(w.shape[0], w.shape[1], 1)
        _run("weight_layout", self.k * self.m * rows, w3, not transpose_w, self.wk)
        self.cb = conv_direct_cl._channel_block(self.k, conv_direct_cl.CL_VEC_BYTES)

    def __call__(self, a):
        """The product for ``a`` (n, K), read where it lies when its rows are contiguous
        (at any row stride): a new C-contiguous (n, N) array."""
        dt, k = self.wk.dtype, self.k
        n, isz = a.shape[0], dt.itemsize
        rows_ok = a.dtype == dt and a.strides[1] == isz and a.strides[0] % isz == 0
        if not rows_ok or (n > 1 and a.strides[0] < k * isz):
            a = np.ascontiguousarray(a, dtype=dt)
        rs = a.strides[0] // isz if n > 1 else k
        # a's rows in one flat view from its first value (the kernel reads each row's k values)
        flat = as_strided(a, shape=((n - 1) * rs + k,), strides=(isz,))
        jm = conv_direct_cl._trim(n, conv_direct_cl.CL_P)
        pos = np.arange(jm, dtype=np.int64) * rs
        pos[n:] = 0  # padding rows read row 0; their outputs are dropped
        y = conv_direct_cl._aligned((jm, self.m), dt)
        _run("forward_cl", n * k * self.m, flat, self.wk, _OFFS, pos, self.cb, self.m, y)
        return y[:n]


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
    if a.strides[0] % dt.itemsize or a.strides[0] // dt.itemsize < k:
        return None
    if not conv_direct_cl.available():
        return None
    return ClProduct(w, transpose_w, m)(a)
