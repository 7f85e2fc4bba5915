"""Row-normalisation kernels shared by layer, group and RMS norm: forward and backward over
blocks of rows that stay in cache.

Measured on one core (float32, 8192 x 512): a NumPy pass over an array in L2 costs ~0.45 ns
per element, the same pass over an array in main memory ~1.2 ns. Layer norm's forward and
backward are ~13 such passes, so running every pass on a block of rows before moving to the
next (rather than each pass over the whole array) is most of the gain; row sums and the
per-column sums of the weight and bias gradients go through BLAS ``gemv`` (``x @ ones``),
which is faster than ``sum(axis=...)`` or ``einsum``. On CuPy there is one block.
"""

from __future__ import annotations

import math
import os

import numpy as np

from . import _kernel_split
from ._kernel_split import fresh_output, split_call

# Elements per block: ~4 float32 arrays of this size (input, output, scratch, gradient) fit a
# 512 KiB L2; 16K-64K measured within noise of each other, 4K pays too much Python per block.
_BLOCK_ELEMS = 1 << 15
# Rows per part of the compiled backward's column sums: ~64K elements, the thread split's
# minimum slice (``_kernel_split``), so a (parts, d) partial array costs ~1/64 of the input
_PART_ELEMS = 1 << 16
# The norm kernels go to the pool's threads only from ``_MIN_PER_THREAD << _SPLIT_SHIFT``
# elements a thread (512K: from 1M elements in all at 2 threads). A norm is a few passes at
# ~0.5 ns an element, so below that a worker's hand-off and wake-up cost more than half the
# pass saves. Quiet run, 2 cores, forward + backward, one thread (CPU ms) vs split (wall ms):
# layer 256x1024 0.149 vs 0.250; group 16x64x16x16 0.168 vs 0.254; rms 256x1024 0.143 vs
# 0.244; batch 32x16x32x32 0.343 vs 0.451; layer 64x128x512 (4M) 4.45 vs 2.90 (session 23).
_SPLIT_SHIFT = 3


def split_min() -> int:
    """Elements per thread below which the norm kernels stay on the calling thread (follows
    ``_kernel_split._MIN_PER_THREAD``, which the tests lower to force a split)."""
    return _kernel_split._MIN_PER_THREAD << _SPLIT_SHIFT


_numba = None  # the compiled kernels' module once loaded; False when unavailable
_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_FLOATS = (np.float32, np.float64)
# The compiled kernels' scalar arguments (eps, 1 / d) in the rows' dtype, by (dtype char,
# value): ``dtype.type(v)`` is ~0.25 us, twice in every small norm call's forward
_SCALARS: dict = {}
# The forward's unused ``xhat`` argument (no normalised rows kept): never written
_NO_XHAT = {_F32: np.empty((0, 0), _F32), _F64: np.empty((0, 0), _F64)}
_FILLS: dict = {}  # _vec's constant vectors


def _scalar(dt, v):
    key = (dt.char, v)
    s = _SCALARS.get(key)
    if s is None:
        if len(_SCALARS) > 512:  # (as many eps / width pairs as a program uses; bounded)
            _SCALARS.clear()
        s = _SCALARS[key] = dt.type(v)
    return s


def _scalars(dt, eps, d: int):
    """``(eps, 1 / d)`` in the dtype ``dt``, from the same cache as :func:`_scalar` (one
    look-up for the forward's pair, by (dtype char, eps, width))."""
    key = (dt.char, eps, d)
    s = _SCALARS.get(key)
    if s is None:
        if len(_SCALARS) > 512:
            _SCALARS.clear()
        s = _SCALARS[key] = (dt.type(eps), dt.type(1.0 / d))
    return s


def _compiled(xp, *arrays):
    """The numba kernels (``_numba_norm``) when they apply to these arrays, else None: NumPy
    arrays of one float dtype, numba installed, and ``EMBER_NUMBA`` not set to ``0``."""
    global _numba
    if xp is not np:
        return None
    dt = arrays[0].dtype
    # identity first: ``dtype in (np.float32, np.float64)`` converts the types (~0.2 us)
    if (dt is not _F32 and dt is not _F64 and dt not in _FLOATS) or arrays[0].shape[-1] == 0:
        return None
    for a in arrays:  # (a loop, not any(<generator>): this runs on every small norm call)
        if a is not None and a.dtype != dt:
            return None
    if _numba is None:
        _numba = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_norm  # (numba is an optional extra, "fast")

            if _numba_norm.AVAILABLE:
                _numba = _numba_norm
    return _numba or None


def row_blocks(xp, m: int, d: int):
    """Slices of rows covering ``range(m)``, each about ``_BLOCK_ELEMS`` elements."""
    if xp is not np:
        return (slice(0, m),)
    step = max(1, _BLOCK_ELEMS // max(d, 1))
    return tuple(slice(s, min(s + step, m)) for s in range(0, m, step))


def _vec(a, d, dt, fill):
    """A contiguous affine vector for the compiled kernels; ``fill`` (1 or 0) when absent,
    one array per (dtype, width, fill) kept for reuse: the kernels only read it."""
    if a is not None:
        return np.ascontiguousarray(a)
    key = (dt.char, d, fill)
    v = _FILLS.get(key)
    if v is None:
        if len(_FILLS) > 64:  # (bounded: a few widths per program)
            _FILLS.clear()
        v = _FILLS[key] = np.full(d, fill, dtype=dt)
    return v


def _ones(xp, n: int, dtype, scale: float = 1.0):
    return xp.full((n,), scale, dtype=dtype)


def normalize_rows(
    xp, x2, eps: float, center: bool = True, weight=None, bias=None, keep_xhat: bool = False
):
    """Normalise each row of the 2-D ``x2``: ``(x - mean) / sqrt(var + eps)`` (``center``) or
    ``x / sqrt(mean(x^2) + eps)`` (RMS), then ``* weight + bias`` over the columns when given.

    Returns ``(out, state)``: ``state`` is what :func:`normalize_rows_backward` needs, either
    ``(xhat, None, invstd)`` or, on the compiled path (which recomputes ``xhat`` row by row in
    backward and so saves a full array, as PyTorch does), ``(x2, mean, invstd)``;
    ``keep_xhat`` asks for the first form. ``invstd`` has shape (M, 1) in ``x2``'s dtype.
    ``out`` is a fresh array: the caller may modify it in place, as PyTorch allows.
    """
    m, d = x2.shape
    dt = x2.dtype
    nb = _compiled(xp, x2, weight, bias)
    if nb is not None:
        x2 = np.ascontiguousarray(x2)
        # not 4K-aliased with x2 (below a page the check is moot: ~0.3 us saved per call)
        small = m * d * dt.itemsize < _kernel_split._PAGE
        out = np.empty((m, d), dt) if small else fresh_output((m, d), dt, x2)
        xhat = np.empty((m, d), dtype=dt) if keep_xhat else _NO_XHAT[dt]
        mean = np.empty(m, dtype=dt)
        inv = np.empty(m, dtype=dt)
        invstd = inv.reshape(m, 1)
        w, b = _vec(weight, d, dt, 1), _vec(bias, d, dt, 0)
        eps_, inv_d = _scalars(dt, eps, d)
        least = split_min()
        if m * d < 2 * least:
            # split_call would run one slice here anyway: no closure, no slices (~2 us)
            nb.rows_forward(x2, w, b, center, keep_xhat, eps_, inv_d, out, xhat, mean, inv)
            return out, ((xhat, None, invstd) if keep_xhat else (x2, mean, invstd))
        # rows are independent: slices of them run on the pool's threads (bitwise as 1 thread)
        split_call(
            nb.rows_forward,
            m,
            d,
            lambda lo, hi: (
                x2[lo:hi],
                w,
                b,
                center,
                keep_xhat,
                eps_,
                inv_d,
                out[lo:hi],
                xhat[lo:hi] if keep_xhat else xhat,
                mean[lo:hi],
                inv[lo:hi],
            ),
            least,
        )
        return out, ((xhat, None, invstd) if keep_xhat else (x2, mean, invstd))
    invstd = xp.empty((m, 1), dtype=dt)
    out = xp.empty((m, d), dtype=dt)
    xhat = xp.empty((m, d), dtype=dt)
    mean_vec = _ones(xp, d, dt, 1.0 / d if d else 0.0)
    for s in row_blocks(xp, m, d):
        xb, hb = x2[s], xhat[s]
        if center:
            mu = xb @ mean_vec
            xp.subtract(xb, mu[:, None], out=hb)
            var = xp.einsum("ij,ij->i", hb, hb)
        else:
            hb[...] = xb
            var = xp.einsum("ij,ij->i", xb, xb)
        var *= 1.0 / d if d else 0.0
        var += eps
        inv = invstd[s, 0]
        xp.sqrt(var, out=var)
        xp.divide(1, var, out=inv)
        hb *= invstd[s]
        ob = out[s]
        if weight is not None:
            xp.multiply(hb, weight, out=ob)
            if bias is not None:
                ob += bias
        elif bias is not None:
            xp.add(hb, bias, out=ob)
        else:
            ob[...] = hb
    return out, (xhat, None, invstd)


def state_xhat(state):
    """The normalised rows from a :func:`normalize_rows` state."""
    src, mean, invstd = state
    if mean is None:
        return src
    return (src - mean[:, None]) * invstd


def normalize_rows_backward(
    xp, g2, state, weight, center: bool, need_x: bool, need_w: bool, need_b: bool
):
    """Gradients of :func:`normalize_rows` (``state`` its saved state) for the output
    gradient ``g2`` (M, D).

    With ``gh = g * weight``, the input gradient is
    ``invstd * (gh - mean(gh) - xhat * mean(gh * xhat))`` (``mean(gh)`` dropped without
    centring); the weight gradient is ``sum_rows(g * xhat)`` and the bias one ``sum_rows(g)``.
    """
    m, d = g2.shape
    dt = g2.dtype
    src, mean, invstd = state
    nb = _compiled(xp, g2, src, weight)
    if nb is not None:
        inv = invstd.reshape(m)
        if mean is None:  # src is xhat
            mean, rs = np.zeros(m, dtype=dt), np.ones(m, dtype=dt)
        else:
            rs = inv
        g2, src, w = np.ascontiguousarray(g2), np.ascontiguousarray(src), _vec(weight, d, dt, 1)
        inv_d = _scalar(dt, 1.0 / d)
        gx = np.empty((m, d), dtype=dt) if need_x else None
        gx_ = gx if need_x else _NO_XHAT[dt]
        # the column sums (gw, gb) go to per-part rows summed in a fixed order afterwards: the
        # threads take whole parts, so the sums are bitwise the same for any thread count
        part_rows = max(1, min(m, _PART_ELEMS // d))
        parts = -(-m // part_rows)
        gw = np.zeros((d,), dtype=dt) if need_w else None
        gb = np.zeros((d,), dtype=dt) if need_b else None
        if parts == 1:  # one part, summed into gw / gb directly (the same bits)
            # (gw and gb stay arrays of their own: the engine copies a leaf's gradient that
            # is a view of a larger buffer)
            pw = gw[None] if need_w else np.zeros((1, d), dtype=dt)
            pb = gb[None] if need_b else np.zeros((1, d), dtype=dt)
            nb.rows_backward(
                g2, src, mean, rs, inv, w, center, need_x, inv_d, gx_, pw, pb, part_rows
            )
            return gx, gw, gb
        pw, pb = np.zeros((parts, d), dtype=dt), np.zeros((parts, d), dtype=dt)

        def args(p0, p1):
            lo, hi = p0 * part_rows, min(m, p1 * part_rows)
            gxs = gx_[lo:hi] if need_x else gx_
            rows = (g2[lo:hi], src[lo:hi], mean[lo:hi], rs[lo:hi], inv[lo:hi])
            return (*rows, w, center, need_x, inv_d, gxs, pw[p0:p1], pb[p0:p1], part_rows)

        split_call(nb.rows_backward, parts, part_rows * d, args, split_min())
        if need_w:
            np.sum(pw, axis=0, out=gw)
        if need_b:
            np.sum(pb, axis=0, out=gb)
        return gx, gw, gb
    gx = xp.empty((m, d), dtype=dt) if need_x else None
    gw = xp.zeros((d,), dtype=dt) if need_w else None
    gb = xp.zeros((d,), dtype=dt) if need_b else None
    xhat = state_xhat(state)
    ones_cache = {}
    inv_d = 1.0 / d if d else 0.0
    mean_vec = _ones(xp, d, dt, inv_d)
    for s in row_blocks(xp, m, d):
        gblk, hb = g2[s], xhat[s]
        rows = gblk.shape[0]
        ones = ones_cache.get(rows)
        if ones is None:
            ones = ones_cache[rows] = _ones(xp, rows, dt)
        tmp = gblk * hb if (need_w or (need_x and weight is not None)) else None
        if need_w:
            gw += ones @ tmp
        if need_b:
            gb += ones @ gblk
        if not need_x:
            continue
        ob = gx[s]
        if weight is not None:
            xp.multiply(gblk, weight, out=ob)
            c2 = tmp @ weight  # sum(g * w * xhat) per row, from the product already made
            c2 *= inv_d
        else:
            ob[...] = gblk
            c2 = xp.einsum("ij,ij->i", gblk, hb)
            c2 *= inv_d
        if tmp is None:
            tmp = xp.empty_like(hb)
        xp.multiply(hb, c2[:, None], out=tmp)
        if center:
            c1 = ob @ mean_vec
            ob -= c1[:, None]
        ob -= tmp
        ob *= invstd[s]
    return gx, gw, gb


def _rows_saved(state, x2, w) -> tuple:
    """What a row norm saves of its ``normalize_rows`` state and flattened weight ``w``: on the
    compiled path the rows are the input itself (``x2``, a view of ``x``, saved after these
    as ``x``) and ``w`` a view of the weight, so both are left out (None): each saved array
    costs ``Function.apply`` a search of the op's arguments (~0.3 us) on every call."""
    src, mean, invstd = state
    if mean is not None and src is x2:
        return None, mean, invstd, None
    return src, mean, invstd, w


def _rows_state(saved, nd: int) -> tuple:
    """``(src, mean, invstd, w)`` of a row norm's ``saved`` (``_rows_saved`` then ``x``,
    ``weight``), the rows and the flattened weight rebuilt from ``x`` and ``weight``."""
    src, mean, invstd, w, x, weight = saved
    if src is None:
        src = x.reshape(-1, math.prod(x.shape[x.ndim - nd :]))
        w = None if weight is None else weight.reshape(-1)
    return src, mean, invstd, w
