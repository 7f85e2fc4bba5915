"""Blocked NumPy kernels for the hot activations (GELU, SiLU): the output and, when a gradient
is needed, the derivative, computed together block by block so that each block's ~20 passes
run in cache and the transcendental (``exp``) is evaluated once per element for both.

Measured on one core (float32, 4M elements): ``np.exp`` costs ~12 simple passes, and a simple
pass over data in main memory ~2.5x one in L2, so the forward keeps its temporaries to one
block and the backward is a single multiplication ``grad * derivative``.

float64 keeps the exact formulas (``scipy.special.ndtr``): it is the dtype gradcheck runs in.
On CuPy there is one block.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ._kernel_split import fresh_output, split_call

_BLOCK = 1 << 14  # elements per block: 4-5 float32 scratch arrays of 64 KiB fit L2

# Abramowitz & Stegun 7.1.26: erfc(z) = t P(t) exp(-z^2), t = 1 / (1 + p z), z >= 0, with
# absolute error <= 1.5e-7 (float32's resolution at 1). The coefficients carry the 0.5 of
# Phi(-|x|) = erfc(|x| / sqrt 2) / 2, and p the 1 / sqrt 2.
_AS_P = 0.3275911 / math.sqrt(2.0)
_AS_A = tuple(0.5 * a for a in (1.061405429, -1.453152027, 1.421413741, -0.284496736, 0.254829592))
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def blocks(xp, n: int, block: int | None = None):
    """Slices covering ``range(n)`` in pieces of ``block`` (default ``_BLOCK``; one piece on
    CuPy)."""
    if xp is not np:
        return (slice(0, n),)
    block = block or _BLOCK
    return tuple(slice(s, min(s + block, n)) for s in range(0, n, block))


def _flat(x):
    return x.reshape(-1)  # a view for contiguous input, else one copy


def gelu_exact_f32(x, need_grad: bool):
    """GELU ``x * Phi(x)`` of a float32 NumPy array and, if ``need_grad``, its derivative
    ``Phi(x) + x * pdf(x)``; returns ``(out, deriv or None)``."""
    f = np.float32
    xf = _flat(x)
    n = xf.size
    out = np.empty(n, dtype=f)
    der = np.empty(n, dtype=f) if need_grad else None
    b = min(n, _BLOCK)
    t_, p_, e_ = (np.empty(b, dtype=f) for _ in range(3))
    a0, a_rest = f(_AS_A[0]), tuple(f(a) for a in _AS_A[1:])
    for s in blocks(np, n):
        xb = xf[s]
        m = xb.size
        t, p, e = t_[:m], p_[:m], e_[:m]
        np.abs(xb, out=t)
        t *= f(_AS_P)
        t += f(1)
        np.reciprocal(t, out=t)
        np.multiply(t, a0, out=p)
        for a in a_rest:
            p += a
            p *= t
        np.multiply(xb, xb, out=e)
        e *= f(-0.5)
        np.exp(e, out=e)  # exp(-x^2 / 2)
        p *= e  # Phi(-|x|)
        np.subtract(f(0.5), p, out=p)
        np.copysign(p, xb, out=p)
        p += f(0.5)  # Phi(x)
        np.multiply(xb, p, out=out[s])
        if der is not None:
            e *= xb
            e *= f(_INV_SQRT_2PI)
            np.add(p, e, out=der[s])
    shape = x.shape
    return out.reshape(shape), (der.reshape(shape) if der is not None else None)


def silu_f32(x, need_grad: bool):
    """SiLU ``x * sigmoid(x)`` of a float32 NumPy array and, if ``need_grad``, its derivative
    ``s (1 + x (1 - s))``; returns ``(out, deriv or None)``."""
    f = np.float32
    xf = _flat(x)
    n = xf.size
    out = np.empty(n, dtype=f)
    der = np.empty(n, dtype=f) if need_grad else None
    b = min(n, _BLOCK)
    s_ = np.empty(b, dtype=f)
    # exp(-x) overflows to inf for x < -88, where 1 / (1 + inf) = 0 is the right sigmoid
    with np.errstate(over="ignore"):
        for sl in blocks(np, n):
            xb = xf[sl]
            s = s_[: xb.size]
            np.negative(xb, out=s)
            np.exp(s, out=s)
            s += f(1)
            np.reciprocal(s, out=s)  # sigmoid(x)
            np.multiply(xb, s, out=out[sl])
            if der is not None:
                d = der[sl]
                np.subtract(xb, out[sl], out=d)  # x (1 - s)
                d += f(1)
                d *= s
    shape = x.shape
    return out.reshape(shape), (der.reshape(shape) if der is not None else None)


def saved_grad(kern, name: str, grad, saved):
    """The compiled one-pass backward ``name`` (``sigmoid_backward``: ``saved`` is the output;
    ``silu_backward``: ``saved`` is the input) when ``saved`` is a C-contiguous NumPy array and
    ``grad`` one of its shape and dtype, C-contiguous or one value broadcast (the gradient of a
    ``sum``); else None."""
    if not (
        type(grad) is np.ndarray
        and grad.shape == saved.shape
        and grad.dtype == saved.dtype
        and saved.flags.c_contiguous
    ):
        return None
    if grad.flags.c_contiguous:
        gf = grad.reshape(-1)
    elif not any(grad.strides):
        gf = np.array([grad.flat[0]], dtype=grad.dtype)  # one value, read by every element
    else:
        return None
    sf = saved.reshape(-1)
    # np.empty, not fresh_output: the result may become a leaf's .grad, and the engine copies a
    # gradient that is a view of a larger buffer (fresh_output's shifted view): 16 MB more
    # traffic, SiLU 64x128x512 at 2 threads 1.9 -> 3.5 ms a step whenever the heap placed the
    # result near x. 4K aliasing does not slow these kernels (4M float32, result 16 bytes after
    # g, 2 KiB away, 16 bytes before: 1.74-1.75 ms at 1 thread; at 2 the aliased ones no slower)
    res = np.empty(sf.shape, sf.dtype)
    k = kern.consts(sf.dtype)
    whole = gf.size == sf.size
    fn = getattr(kern, name)

    def args(lo, hi):  # both kernels take (saved, grad, result, constants)
        return (sf[lo:hi], gf[lo:hi] if whole else gf, res[lo:hi], k)

    split_call(fn, sf.size, 1, args)
    return res.reshape(grad.shape)


def sigmoid_grad(kern, grad, out):
    """``grad * out * (1 - out)`` in one compiled pass (see ``saved_grad``); else None."""
    return saved_grad(kern, "sigmoid_backward", grad, out)


def _multiply(a, b, out):
    np.multiply(a, b, out=out)


def times(a, b):
    """``a * b``; for two C-contiguous NumPy arrays of one shape and dtype (the backward's
    ``grad * derivative``) the product runs in slices over the pool's threads (a ufunc releases
    the GIL), elementwise, so bitwise the product of one thread."""
    if not (
        type(a) is np.ndarray
        and type(b) is np.ndarray
        and a.shape == b.shape
        and a.dtype == b.dtype
        and a.flags.c_contiguous
        and b.flags.c_contiguous
    ):
        return a * b
    out = np.empty_like(a)
    af, bf, of = a.reshape(-1), b.reshape(-1), out.reshape(-1)
    split_call(_multiply, af.size, 1, lambda lo, hi: (af[lo:hi], bf[lo:hi], of[lo:hi]))
    return out


# ---- compiled (numba) kernels: one pass, a vectorised exp ----------------------------------
_numba = None  # the ``_numba_act`` module once loaded; False when unavailable
# float32 is where the compiled exp wins (float64 calls libm's exp / erfc per element, no faster
# than NumPy); the tests add float64 to run the same kernels under gradcheck
_COMPILED_DTYPES = (np.dtype(np.float32),)


def compiled(xp, x):
    """The numba activation kernels (``_numba_act``) when they apply to the array ``x``: NumPy,
    a dtype of ``_COMPILED_DTYPES``, numba installed and ``EMBER_NUMBA`` not ``0``; else None."""
    global _numba
    if xp is not np or x.dtype not in _COMPILED_DTYPES or x.size == 0:
        return None
    if _numba is None:
        _numba = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_act  # (numba is an optional extra, "fast")

            if _numba_act.AVAILABLE:
                _numba = _numba_act
    return _numba or None


_FLAT = {
    # name: (forward, forward with the derivative)
    "gelu": ("gelu_forward", "gelu_forward_der"),
    "gelu_tanh": ("gelu_tanh_forward", "gelu_tanh_forward_der"),
    "silu": ("silu_forward", "silu_forward_der"),
    "sigmoid": ("sigmoid_forward", None),  # its backward reads the output (``sigmoid_grad``)
}


def flat_compiled(kern, name: str, x, need_grad: bool):
    """Run the compiled elementwise activation ``name`` (a key of ``_FLAT``) over ``x``;
    returns ``(out, derivative or None)``, both fresh arrays of ``x``'s shape."""
    xf = np.ascontiguousarray(x).reshape(-1)
    k = kern.consts(x.dtype)
    out = fresh_output(xf.shape, xf.dtype, xf)
    fwd_name, fwd_der_name = _FLAT[name]
    der = None
    if need_grad:
        der = fresh_output(xf.shape, xf.dtype, xf)
        fwd_der = getattr(kern, fwd_der_name)
        split_call(fwd_der, xf.size, 1, lambda lo, hi: (xf[lo:hi], out[lo:hi], der[lo:hi], k))
    else:
        split_call(getattr(kern, fwd_name), xf.size, 1, lambda lo, hi: (xf[lo:hi], out[lo:hi], k))
    return out.reshape(x.shape), (der.reshape(x.shape) if der is not None else None)


# Rows at least this long take their maxima from NumPy's (SIMD) row max before the compiled
# forward: the compiled select loop is not vectorised, ~0.9 ns per element against ~0.4 (512 x
# 10000: 8.5 vs 2.0 ms, half of log_softmax's forward), while NumPy pays ~0.15 us per row
# (65536 x 128: 11.7 ms against 8.4 compiled)
_NUMPY_MAX_MIN_D = 1024


def _forward_rows(fn, d: int):
    """The compiled softmax / log_softmax forward ``fn`` as ``(x, out, k)``: the row maxima
    come from NumPy for rows of ``_NUMPY_MAX_MIN_D`` or more (inside each thread's slice)."""
    if d < _NUMPY_MAX_MIN_D:
        return lambda x, out, k: fn(x, np.empty(0, x.dtype), False, out, k)
    return lambda x, out, k: fn(x, np.max(x, axis=1), True, out, k)


def rows_compiled(kern, name: str, *arrays):
    """Run the compiled row kernel ``name`` (``softmax_forward``, ``softmax_backward``,
    ``log_softmax_forward``, ``log_softmax_backward``) over the last dim of ``arrays`` (same
    shape); returns a fresh array of that shape."""
    shape = arrays[-1].shape
    d = shape[-1]
    a2 = [np.ascontiguousarray(a).reshape(-1, d) for a in arrays]
    forward = name.endswith("_forward")
    # a backward's result may become a leaf's .grad, which must own its whole buffer
    shape2, dt = a2[-1].shape, a2[-1].dtype
    out = fresh_output(shape2, dt, a2[0]) if forward else np.empty(shape2, dtype=dt)
    k = kern.consts(out.dtype)
    fn = getattr(kern, name)
    if forward:
        fn = _forward_rows(fn, d)
    split_call(fn, out.shape[0], d, lambda lo, hi: (*(a[lo:hi] for a in a2), out[lo:hi], k))
    return out.reshape(shape)
