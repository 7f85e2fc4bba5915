"""The linear layer's serial pieces around its products: the bias gradient as a compiled column
sum, and the forward's product in the orientation OpenBLAS runs faster for few rows.

**Bias gradient.** ``g.sum(0)`` of a C-contiguous ``(m, n)`` gradient adds the rows one after
the other into an accumulator (NumPy's reduction keeps the reduced axis outer when it is not
the contiguous one), but its buffered iteration ran at 8-13 GB/s here: 2048 x 128 float32
51 us, 2048 x 384 99 us, 2048 x 1000 188 us (AMD EPYC, one thread). The same order as one
compiled loop (row ``i`` added into ``acc[:]``, LLVM vectorises along the row) takes 16, 48 and
129 us, and its result is NumPy's bit for bit: each column is still summed from row 0 to row
``m - 1``. No fastmath: reassociation would change the order. Split over two threads it did
not gain (memory-bound, ~20 us of hand-off): it stays serial.

**Forward orientation.** ``x @ w.T`` is OpenBLAS's column-major ``TN`` product with ``M = n``;
``w @ x.T`` is the same product with the roles of ``M`` and ``N`` swapped, and for few rows
against a long reduction OpenBLAS runs it faster (``m = 128``, 784 -> 512: 1.16 -> 1.09 ms at
one thread, 0.83 -> 0.69 at two, bias add and transposed copy included). Its ``(n, m)`` result
goes back to ``(m, n)`` row-major in the pass that adds the bias, which the plain path makes
anyway. Each element is the same dot product in the same blocks, and the results were NumPy's
bit for bit on every shape measured; see :func:`swapped_product` for where it is used.

Imported lazily (importing numba costs ~0.5 s); without numba (or with ``EMBER_NUMBA=0``) the
column sum is NumPy's.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["bias_grad", "use_swapped", "swapped_product"]

# Gradients from this many elements take the compiled sum (below it NumPy's is a few us and
# loading numba would cost more than it saves in a short script).
MIN_SUM_SIZE = 1 << 16

_sum_kernel = None  # the compiled column sum, False when numba is unavailable


def _load_sum():
    global _sum_kernel
    if _sum_kernel is None:
        _sum_kernel = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            try:
                from numba import njit
            except ImportError:
                return False

            @njit(cache=True, nogil=True)
            def column_sum(g, out):  # pragma: no cover - compiled
                acc = g[0].copy()
                for i in range(1, g.shape[0]):
                    row = g[i]
                    for j in range(acc.shape[0]):
                        acc[j] += row[j]
                out[:] = acc

            _sum_kernel = column_sum
    return _sum_kernel


def bias_grad(g2: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``g2.sum(0)`` for a 2-D gradient, bit for bit, written into ``out`` when given."""
    if (
        type(g2) is np.ndarray
        and g2.size >= MIN_SUM_SIZE
        and g2.shape[1] >= 8
        and g2.dtype.char in "fd"
        and g2.flags.c_contiguous
        and (out is None or (out.dtype == g2.dtype and out.flags.c_contiguous))
    ):
        kern = _load_sum()
        if kern:
            res = np.empty(g2.shape[1], g2.dtype) if out is None else out
            kern(g2, res)
            return res
    if out is not None and out.dtype == g2.dtype:
        return g2.sum(0, out=out)
    return g2.sum(0)


def use_swapped(x: np.ndarray, w: np.ndarray) -> bool:
    """Whether ``x @ w.T`` runs faster as ``(w @ x.T).T`` (see the module docstring).

    Measured (one and two threads, ``w @ x.T`` plus the transposed bias add against ``x @ w.T``
    plus the bias add): 32 x 512 -> 256 0.69 / 0.68, 64 x 784 -> 512 0.85 / 0.77, 128 x 784 ->
    512 0.94 / 0.84, 128 x 512 -> 256 0.98 / 0.85, 128 x 1024 -> 1024 0.89 / 0.94; slower from
    256 rows (256 x 784 -> 512 1.03 / 0.96, 512 x 512 -> 512 1.23 / 1.36), with a short
    reduction (128 x 128 -> 512 1.08 / 1.17) or few outputs.
    """
    m, k = x.shape
    n = w.shape[0]
    return 16 <= m <= 128 and k >= 512 and n >= 2 * m


def swapped_product(x: np.ndarray, w: np.ndarray, b: np.ndarray | None) -> np.ndarray:
    """``x @ w.T (+ b)`` as a C-contiguous ``(m, n)`` array, computed as ``w @ x.T`` and written
    back transposed in the pass that adds ``b`` (a copy when ``b`` is None)."""
    d = np.matmul(w, x.T)
    out = np.empty((x.shape[0], w.shape[0]), d.dtype)
    if b is None:
        np.copyto(out, d.T)
    else:
        np.add(d.T, b, out=out)
    return out
