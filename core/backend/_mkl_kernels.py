"""numba trampolines into MKL's ILP64 GEMM routines (see ``mkl_gemm`` for why and when).

A ctypes call costs ~12 us here (each ``ndarray.ctypes.data`` ~2.4 us, the argument
conversion ~4 us), as much as a 32x128 @ 128x512 product takes; a compiled function reads the
strides and data pointers itself and calls MKL for ~1 us in all. The routines are declared by
symbol name (``ExternalFunction``), not by address, so the machine code can be cached on disk:
LLVM resolves ``cblas_sgemm_64`` in the library that ``load`` made visible. The ``_64`` (ILP64)
names take 64-bit integers and are not exported by the BLAS libraries NumPy or PyTorch carry.

Each function returns False, having done nothing, when an operand has unit stride along
neither of its last two axes; the caller then uses NumPy.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types

_i = types.int64
_GEMM_ARGS = (_i,) * 6
_NO_TRANS, _TRANS = 111, 112


def _gemm_type(real):
    return types.void(
        *_GEMM_ARGS, real, types.voidptr, _i, types.voidptr, _i, real, types.voidptr, _i
    )


def _batch_type(real):
    p = types.voidptr
    return types.void(*_GEMM_ARGS, real, p, _i, _i, p, _i, _i, real, p, _i, _i, _i)


_sgemm = types.ExternalFunction("cblas_sgemm_64", _gemm_type(types.float32))
_dgemm = types.ExternalFunction("cblas_dgemm_64", _gemm_type(types.float64))
_sbatch = types.ExternalFunction("cblas_sgemm_batch_strided_64", _batch_type(types.float32))
_dbatch = types.ExternalFunction("cblas_dgemm_batch_strided_64", _batch_type(types.float64))


@njit(cache=True, nogil=True, inline="always")
def _layout(s0, s1, rows, cols, itemsize):
    """(transpose flag, leading dimension) of a matrix with byte strides (s0, s1); flag 0
    when neither axis has unit stride."""
    if s1 == itemsize and s0 % itemsize == 0 and s0 // itemsize >= max(cols, 1):
        return _NO_TRANS, s0 // itemsize
    if s0 == itemsize and s1 % itemsize == 0 and s1 // itemsize >= max(rows, 1):
        return _TRANS, s1 // itemsize
    return 0, 0


@njit(cache=True, nogil=True, inline="always")
def _out_ld(c, rows, cols, itemsize):
    """Leading dimension of an output matrix with unit stride along its rows; 0 otherwise."""
    s0, s1 = c.strides[c.ndim - 2], c.strides[c.ndim - 1]
    if (s1 == itemsize or cols == 1) and s0 % itemsize == 0 and s0 // itemsize >= max(cols, 1):
        return s0 // itemsize
    if rows == 1 and (s1 == itemsize or cols == 1):
        return max(cols, 1)
    return 0


def gemm(a, b, c, beta):
    """``c[...] = a @ b + beta * c`` for 2-D float32/float64 arrays of one dtype (``beta`` 0
    or 1: with 0, ``c``'s old contents are never read)."""
    m, k = a.shape
    n = b.shape[1]
    it = a.itemsize
    ta, lda = _layout(a.strides[0], a.strides[1], m, k, it)
    tb, ldb = _layout(b.strides[0], b.strides[1], k, n, it)
    ldc = _out_ld(c, m, n, it)
    if ta == 0 or tb == 0 or ldc == 0:
        return False
    if it == 4:  # float32 (the caller passes float32 or float64 only)
        _sgemm(101, ta, tb, m, n, k, np.float32(1), a.ctypes.data, lda, b.ctypes.data, ldb,
               np.float32(beta), c.ctypes.data, ldc)  # fmt: skip
    else:
        _dgemm(101, ta, tb, m, n, k, 1.0, a.ctypes.data, lda, b.ctypes.data, ldb,
               np.float64(beta), c.ctypes.data, ldc)  # fmt: skip
    return True


def gemm_batch(a, b, c):
    """``c[i] = a[i] @ b[i]`` for 3-D float32/float64 stacks with a uniform, non-negative
    stride between matrices; ``c`` C-contiguous (the caller checks)."""
    bs, m, k = a.shape
    n = b.shape[2]
    it = a.itemsize
    ta, lda = _layout(a.strides[1], a.strides[2], m, k, it)
    tb, ldb = _layout(b.strides[1], b.strides[2], k, n, it)
    sa, sb = a.strides[0], b.strides[0]
    if ta == 0 or tb == 0 or sa < 0 or sb < 0 or sa % it != 0 or sb % it != 0:
        return False
    if it == 4:  # float32 (the caller passes float32 or float64 only)
        one, zero = np.float32(1), np.float32(0)
        _sbatch(101, ta, tb, m, n, k, one, a.ctypes.data, lda, sa // it,
                b.ctypes.data, ldb, sb // it, zero, c.ctypes.data, n, m * n, bs)  # fmt: skip
    else:
        _dbatch(101, ta, tb, m, n, k, 1.0, a.ctypes.data, lda, sa // it,
                b.ctypes.data, ldb, sb // it, 0.0, c.ctypes.data, n, m * n, bs)  # fmt: skip
    return True


_compiled: dict = {}


def kernel(dtype, ndim: int):
    """The compiled ``gemm`` (2-D) or ``gemm_batch`` (3-D) for ``dtype``, built (or loaded from
    the disk cache, ~0.1 s each) at its first use.

    Each has one signature with every array typed as any layout ('A'): C- and F-ordered arrays
    convert to it at the call, so there is one compiled function per dtype and rank instead of
    one per combination of operand layouts, and a float32 2-D model loads only one of the four.
    """
    key = (dtype, ndim)
    fn = _compiled.get(key)
    if fn is None:
        t = types.float32 if dtype == np.float32 else types.float64
        # the operands are typed read-only, so that writable arrays and read-only ones (a
        # matrix broadcast against a stack at stride 0) convert to the one signature
        ins = (types.Array(t, ndim, "A", readonly=True),) * 2
        arrays = (*ins, types.Array(t, ndim, "A"))
        if ndim == 2:
            fn = njit(types.boolean(*arrays, types.int64), cache=True, nogil=True)(gemm)
        else:
            fn = njit(types.boolean(*arrays), cache=True, nogil=True)(gemm_batch)
        _compiled[key] = fn
    return fn
