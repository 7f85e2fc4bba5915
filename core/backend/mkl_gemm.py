"""Matrix products through Intel MKL when the optional ``mkl`` wheel is installed.

Why: NumPy's wheels bundle OpenBLAS, and on the skinny products that convolutions (im2col),
recurrent steps and linear layers with small batches make, OpenBLAS 0.3.31 runs well below
MKL (PyTorch's CPU BLAS). Measured at one thread on a 2-core AVX-512 Xeon (process time, best
of 15 interleaved rounds), float32 GFLOP/s OpenBLAS -> MKL: 32x128 @ 128x512 (an LSTM step)
63 -> 113; 8192x144 @ 144x16 (a 16-channel 3x3 convolution) 38 -> 84; 16x8192 @ 8192x144
(its weight gradient) 45 -> 88; 64x2048 @ 2048x576 81 -> 133; large square products are
equal (512x1024 @ 1024x4096: 118 / 122). ``pip install ember[mkl]`` adds the wheel.

How: the wheel's ``libmkl_rt`` is loaded at the first product that qualifies, with MKL's
*sequential* threading layer (MKL's own OpenMP threads would compete with ember's worker pool
and with OpenBLAS's threads), and called from small numba functions (``_mkl_kernels``: ~1 us a
call where ctypes costs ~12 us) that release the GIL, so the pool can run several products at
once. The path therefore needs numba as well (the ``fast`` extra) and follows
``EMBER_NUMBA``. A product qualifies when both operands are NumPy float32 or float64 matrices
(or equal-length stacks of them, for the strided batch routine) of one dtype, each with unit
stride along one of its last two axes (a transposed view is passed as a transpose flag, not
copied), and it has at least ``MIN_FLOPS`` multiply-adds.
With more than one BLAS thread (``ember.set_num_threads``), products from ``MULTI_FLOPS`` up
stay with OpenBLAS, which splits them across threads. Everything else, and every product when
MKL is absent or turned off, is ``numpy.matmul``.

``EMBER_MKL=0`` (or :func:`set_enabled`) turns the path off; it is also off on CPUs that are
not Intel's unless ``EMBER_MKL=1``. Measured on a 2-core AVX-512 AMD EPYC (session 23, MKL
2026.2.1, 1 thread, CPU time) MKL does not pay there: the convolution GEMMs are equal or
slower (2048x576 @ 576x64: OpenBLAS 86 GFLOP/s, MKL 84; 8192x800 @ 800x32 61 / 56), large
products slower (256x1024 @ 1024x4096: 88-92 / 62-86) and only few rows against a
*transposed* weight faster (8x1024 @ (4096x1024).T: 17 / 26-33), which the recurrent layers
avoid (``rnn.LSTMLayer``: ``w_hh @ h.T``, 26-27 GFLOP/s without MKL); the kernel sweep with
``EMBER_MKL=1``: conv 1.06 of torch against 1.05, rnn 1.01 against 0.94. MKL is
loaded only after ``LOAD_AFTER`` multiply-adds have gone through NumPy (see there; sooner at
several threads, see ``SMP_FLOPS``), at once with ``EMBER_MKL=1``, :func:`set_enabled` or
:func:`enabled`.
"""

from __future__ import annotations

import ctypes
import math
import os

import numpy as np

from .threads import num_threads

# Products below this many multiply-adds go to NumPy, whose call is as cheap (~1 us).
MIN_FLOPS = 1 << 16
# With more than one BLAS thread, products from this size keep OpenBLAS's threads.
MULTI_FLOPS = 1 << 25

# MKL and numba are loaded (~0.7 s of CPU in a fresh process, most of it numba's start) only
# once the process has sent this many multiply-adds to NumPy -- about half a second of GEMM on
# one core -- so that short scripts and the many small processes of a launch never pay for it.
LOAD_AFTER = 1 << 34
_seen = 0
# ... except at more than one BLAS thread, where each product that OpenBLAS would split across
# its threads (from ``SMP_FLOPS``, OpenBLAS's own threshold) and that is below ``MULTI_FLOPS``
# counts as (at least) ``LOAD_AFTER >> SMP_LOAD_SHIFT`` multiply-adds: MKL loads after 16.
# Why: OpenBLAS's threads spin while they wait for each other, and on a loaded machine one of
# them is often descheduled, so each such product costs a scheduler slice (1-12 ms) where MKL's
# sequential call takes 0.05-0.3 ms: efficientnet_v2_s at 48x48 px, batch 2, two threads, took
# 1.3-2.5 s a forward here (0.1 s at one thread) before MKL ever loaded (issue 23).
SMP_FLOPS = 1 << 18
SMP_LOAD_SHIFT = 4

_lib = None  # the loaded library, False when unavailable
_kernels = None
_enabled: bool | None = None


def _find_library() -> str | None:
    """The path of ``libmkl_rt`` from the installed ``mkl`` distribution, if any."""
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        dist = distribution("mkl")
    except (ImportError, PackageNotFoundError):
        return None
    for f in dist.files or ():
        if f.name.startswith("libmkl_rt.so"):
            return str(dist.locate_file(f))
    return None


def _intel_cpu() -> bool:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("vendor_id"):
                    return "GenuineIntel" in line
    except OSError:
        pass
    return False


def _load():
    """Load MKL (sequential layer) and the compiled trampolines; False when either is missing."""
    global _lib, _kernels
    if _lib is not None:
        return _lib
    _lib = False
    path = _find_library()
    if path is None:
        return _lib
    try:
        import llvmlite.binding as llvm

        lib = ctypes.CDLL(path)
        # before any other MKL call: no MKL threads (see the module docstring)
        lib.MKL_Set_Threading_Layer(ctypes.c_int(1))  # MKL_THREADING_SEQUENTIAL
        llvm.load_library_permanently(path)  # makes cblas_*_64 resolvable for the kernels
        from . import _mkl_kernels
    except (ImportError, OSError, AttributeError, RuntimeError):
        return _lib
    _kernels = _mkl_kernels
    _lib = lib
    return _lib


def enabled() -> bool:
    """Whether products may go to MKL (``mkl`` and numba installed, the path switched on)."""
    global _enabled
    if _enabled is None:
        flag = os.environ.get("EMBER_MKL", "")
        if flag == "0" or os.environ.get("EMBER_NUMBA", "1") == "0":
            _enabled = False
        else:
            _enabled = (flag == "1" or _intel_cpu()) and bool(_load())
    return _enabled


def active() -> bool:
    """Whether products go to MKL now (loaded and switched on); unlike ``enabled()`` it never
    loads MKL."""
    return _enabled is True


def _ready(flops: int) -> bool:
    """``enabled()``, deferred until ``LOAD_AFTER`` multiply-adds have gone through NumPy."""
    global _seen
    if _enabled is None and os.environ.get("EMBER_MKL", "") != "1":
        if SMP_FLOPS <= flops < MULTI_FLOPS and num_threads() > 1:
            _seen += max(flops, LOAD_AFTER >> SMP_LOAD_SHIFT)  # see SMP_FLOPS
        else:
            _seen += flops
        if _seen < LOAD_AFTER:
            return False
    return enabled()


def set_enabled(flag: bool) -> bool:
    """Switch the MKL path on or off for this process; returns the previous setting.

    Switching on has no effect when MKL or numba cannot be loaded.
    """
    global _enabled
    prev = enabled()
    _enabled = bool(flag) and bool(_load())
    return prev


def _fallback(a, b, out):
    # ``@`` serves any array module (CuPy's too); ``out=`` callers pass NumPy arrays
    return a @ b if out is None else np.matmul(a, b, out=out)


def matmul_into(xp, a, b, out):
    """``a @ b`` written into ``out`` for arrays of the module ``xp``; returns ``out``."""
    return matmul(a, b, out=out) if xp is np else xp.matmul(a, b, out=out)


def addmm_(c, a, b) -> None:
    """``c += a @ b`` in place for 2-D NumPy matrices: one MKL call with ``beta = 1`` where it
    qualifies (no temporary product), ``c += a @ b`` otherwise."""
    if (
        _enabled is not False
        and type(a) is np.ndarray
        and type(b) is np.ndarray
        and type(c) is np.ndarray
        and a.ndim == 2
        and b.ndim == 2
        and c.ndim == 2
        and a.dtype == b.dtype == c.dtype
        and a.dtype.char in "fd"
        and a.shape[1] == b.shape[0]
        and c.shape == (a.shape[0], b.shape[1])
        and 0 not in c.shape
        and a.size * c.shape[1] >= MIN_FLOPS
        and not (a.size * c.shape[1] >= MULTI_FLOPS and num_threads() > 1)
        and _ready(a.size * c.shape[1])
        and not np.may_share_memory(c, a)
        and not np.may_share_memory(c, b)
        and _kernels.kernel(a.dtype, 2)(a, b, c, 1)
    ):
        return
    c += a @ b


def matmul(a, b, out=None):
    """``a @ b`` for NumPy matrices and stacks of them (2-D @ 2-D, 3-D @ 3-D of one length, and
    a matrix against a stack, which shares it at stride 0) through MKL where the product
    qualifies (see the module docstring); ``a @ b`` (or ``numpy.matmul(a, b, out=out)``)
    otherwise, so any array module's arrays may be passed. A 2-D ``out`` needs unit stride
    along its rows only (a block of a larger array serves); a 3-D one must be C-contiguous.
    """
    if _enabled is False or type(a) is not np.ndarray or type(b) is not np.ndarray:
        return _fallback(a, b, out)
    if b.ndim < 2 or a.size * b.shape[-1] < MIN_FLOPS:
        # small products first, at the cost of one multiply: they are most calls of a small
        # model, and NumPy's call is as cheap as MKL's would be
        return a @ b if out is None else np.matmul(a, b, out=out)
    if a.ndim < 2 or a.dtype != b.dtype or a.dtype.char not in "fd":
        return _fallback(a, b, out)
    if a.ndim > 3 or b.ndim > 3:  # (B, H, m, k) @ (B, H, k, n): one stack when views allow
        return _matmul_nd(a, b, out)
    if (
        a.ndim == 3
        and b.ndim == 2
        and a.flags.c_contiguous
        and (out is None or (out.shape == a.shape[:2] + b.shape[1:] and out.flags.c_contiguous))
    ):  # a C-contiguous stack times a matrix is one tall product
        flat = matmul(
            a.reshape(-1, a.shape[2]), b, None if out is None else out.reshape(-1, b.shape[1])
        )
        return flat.reshape(a.shape[:2] + b.shape[1:]) if out is None else out
    if a.ndim != b.ndim:  # one matrix against a stack: the matrix repeats at stride 0
        if a.ndim == 2:
            a = np.broadcast_to(a, b.shape[:1] + a.shape)
        else:
            b = np.broadcast_to(b, a.shape[:1] + b.shape)
    shape = a.shape[:-1] + b.shape[-1:]
    flops = a.size * shape[-1]
    if (
        flops < MIN_FLOPS
        or a.shape[-1] != b.shape[-2]
        or a.shape[:-2] != b.shape[:-2]
        or 0 in shape
        or (flops >= MULTI_FLOPS and num_threads() > 1)
        or not _ready(flops)
    ):
        return _fallback(a, b, out)
    if out is None:
        c = np.empty(shape, dtype=a.dtype)
    elif (
        type(out) is np.ndarray
        and out.shape == shape
        and out.dtype == a.dtype
        and (out.ndim == 2 or out.flags.c_contiguous)
        and not np.may_share_memory(out, a)
        and not np.may_share_memory(out, b)
    ):
        c = out  # (a 2-D out without unit row stride is refused by the kernel below)
    else:
        return _fallback(a, b, out)
    fn = _kernels.kernel(a.dtype, a.ndim)
    done = fn(a, b, c, 0) if a.ndim == 2 else fn(a, b, c)
    return c if done else np.matmul(a, b, out=out)


def _stack_view(x):
    """``x`` (..., m, k) as a 3-D view (prod(...), m, k) when its leading axes merge into one
    stride (C-ordered leading axes, broadcast ones at stride 0, any of size 1); else None."""
    lead, strides = x.shape[:-2], x.strides[:-2]
    real = [i for i, n in enumerate(lead) if n != 1]
    step = strides[real[-1]] if real else 0
    for i in real:
        if strides[i] != step * math.prod(lead[i + 1 :]):
            return None
    return np.lib.stride_tricks.as_strided(
        x, (math.prod(lead),) + x.shape[-2:], (step,) + x.strides[-2:], writeable=False
    )


def _matmul_nd(a, b, out):
    """Stacks with more than one leading axis, of one leading shape: merged into a 3-D stack."""
    shape = a.shape[:-1] + b.shape[-1:]
    if a.ndim != b.ndim or a.shape[:-2] != b.shape[:-2] or 0 in shape:
        return _fallback(a, b, out)
    if out is not None and (out.shape != shape or not out.flags.c_contiguous):
        return _fallback(a, b, out)
    a3, b3 = _stack_view(a), _stack_view(b)
    if a3 is None or b3 is None:
        return _fallback(a, b, out)
    r = matmul(a3, b3, None if out is None else out.reshape((-1,) + shape[-2:]))
    return r.reshape(shape) if out is None else out
