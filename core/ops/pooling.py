"""Windowed pooling (N-d): max (with PyTorch's indices) and average; adaptive pooling lives in
adaptive_pool.py, average pooling in pooling_avg.py.

Pooling runs as a loop over kernel offsets, each step one strided slice of the padded input the
size of the output: with the few offsets of a pooling kernel this beats gathering the windows
and reducing along a short axis (measured: ~4x for 2x2 max pooling with indices); the backward
is the same loop in reverse. Average pooling with kernel == stride that tiles the input exactly
is a reshape and a sum.

Every backward is a linear map of the incoming gradient with its own adjoint, so each op comes
with a companion Function (its adjoint) and double backward works.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..autograd.function import Function
from ._kernel_split import split_call


class PoolGeom:
    """Geometry of a windowed pooling; ``pad`` is (low, high) per dim, where high also covers
    the windows that ``ceil_mode`` lets hang over the end of the input."""

    __slots__ = ("kernel", "stride", "pad", "dilation", "in_size", "out_size")

    def __init__(self, kernel, stride, padding, dilation, in_size, ceil_mode):
        self.kernel, self.stride, self.dilation = tuple(kernel), tuple(stride), tuple(dilation)
        self.in_size = tuple(in_size)
        out, pad = [], []
        for n, k, s, p, d in zip(in_size, kernel, stride, padding, dilation):
            o = pooling_output_size(n, k, s, p, d, ceil_mode)
            out.append(o)
            pad.append((p, max(p, (o - 1) * s + d * (k - 1) + 1 - n - p)))
        self.out_size, self.pad = tuple(out), tuple(pad)

    @property
    def overlapping(self) -> bool:
        return any(s < d * (k - 1) + 1 for k, s, d in zip(self.kernel, self.stride, self.dilation))


def pooling_output_size(n, k, s, p, d, ceil_mode) -> int:
    """PyTorch's pooling_output_shape: the last window must start inside the input or padding."""
    span = n + 2 * p - d * (k - 1) - 1
    o = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1
    return o


def offsets(kernel):
    if len(kernel) == 1:
        return [(i,) for i in range(kernel[0])]
    return [(i,) + rest for i in range(kernel[0]) for rest in offsets(kernel[1:])]


def _slices(geom, offset):
    """The strided slice of the padded input that kernel offset ``offset`` sees at each output."""
    return (slice(None), slice(None)) + tuple(
        slice(o * d, o * d + s * (m - 1) + 1, s)
        for o, d, s, m in zip(offset, geom.dilation, geom.stride, geom.out_size)
    )


def _crop(geom):
    return (slice(None), slice(None)) + tuple(
        slice(lo, lo + n) for n, (lo, _) in zip(geom.in_size, geom.pad)
    )


def _padded(xp, x, geom, value):
    if not any(lo or hi for lo, hi in geom.pad):
        return x
    shape = x.shape[:2] + tuple(n + lo + hi for n, (lo, hi) in zip(geom.in_size, geom.pad))
    out = xp.full(shape, value, dtype=x.dtype)
    out[_crop(geom)] = x
    return out


def _lowest(xp, dtype):
    return -xp.inf if xp.dtype(dtype).kind in "fcV" else xp.iinfo(dtype).min


def _simple(geom) -> bool:
    """kernel == stride, no dilation, no padding, and the windows tile the input exactly."""
    return all(
        k == s and d == 1 and lo == 0 and hi == 0 and n == k * o
        for k, s, d, (lo, hi), n, o in zip(
            geom.kernel, geom.stride, geom.dilation, geom.pad, geom.in_size, geom.out_size
        )
    )


# ---- max pooling ---------------------------------------------------------------------------
def max_pool_forward(xp, x, geom):
    """(values, kernel-offset index of each output's maximum) by a loop over kernel offsets.

    Strict ``>`` keeps the first maximum, as in PyTorch. The selections are arithmetic
    (``maximum``, and ``which += take * (k - which)``): NumPy's ``where`` and masked copies
    branch per element and run ~8x slower on the random masks of pooling. A NaN wins its window
    (``maximum`` propagates it); PyTorch then reports the last NaN's position, which a second
    pass fixes up when the output holds any NaN.
    """
    # (a NaN makes a part's sum NaN: such inputs keep the NumPy loop; tiled 2x2 has its own
    # compiled kernel: the general one was no faster than the pairwise tree, 13.1 vs 15.0 ms)
    tiled = geom.kernel == (2, 2) and _simple(geom)
    nb = None if tiled and not TILED_2X2 else _compiled(xp, x, geom)
    if nb is not None and x.size:
        res = _max_pool2d_compiled(nb, x, geom)
        if res is not None:
            return res
    xpad = _padded(xp, x, geom, _lowest(xp, x.dtype))
    taps = offsets(geom.kernel)
    if geom.kernel == (2, 2) and _simple(geom):
        best, which = _max_pool_2x2(xp, x)
    else:
        best = xpad[_slices(geom, taps[0])].copy()
        which = xp.zeros(best.shape, dtype=xp.uint8 if len(taps) < 256 else xp.int32)
        code = which.dtype.type
        for k, off in enumerate(taps[1:], 1):
            cur = xpad[_slices(geom, off)]
            which += (cur > best) * (code(k) - which)  # modular for uint8: still exact
            xp.maximum(best, cur, out=best)
    if xpad is not x and best.dtype.kind in "fV" and bool(xp.isneginf(best).any()):
        # a window of -inf values would report a padding position: PyTorch reports its first
        # tap inside the input
        inside = _padded(xp, xp.ones(x.shape, dtype=bool), geom, False)
        low = xp.isneginf(best)
        code = which.dtype.type
        for k in range(len(taps) - 1, -1, -1):
            which = xp.where(low & inside[_slices(geom, taps[k])], code(k), which)
    if best.dtype.kind in "fV" and bool(xp.isnan(best).any()):
        code = which.dtype.type
        for k, off in enumerate(taps):
            which = xp.where(xp.isnan(xpad[_slices(geom, off)]), code(k), which)
    return best, which


_numba = None
# The compiled 2x2 tiled kernels (``_numba_pool.max_pool2x2_*``, ``avg_pool2x2_*``); False: the
# NumPy pairwise tree, tile sum and repeat as before session 24 (an A/B switch for measuring)
TILED_2X2 = True


def _compiled(xp, x, geom):
    """The numba kernels (``_numba_pool``) when they apply: 2-D pooling of a NumPy float32 or
    float64 array, numba installed, ``EMBER_NUMBA`` not ``0``; else None."""
    global _numba
    if xp is not np or len(geom.kernel) != 2 or x.dtype not in (np.float32, np.float64):
        return None
    if _numba is None:
        _numba = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_pool  # (numba is an optional extra, "fast")

            if _numba_pool.AVAILABLE:
                _numba = _numba_pool
    return _numba or None


def _geom2d(geom):
    (kh, kw), (sh, sw), (dh, dw) = geom.kernel, geom.stride, geom.dilation
    return kh, kw, sh, sw, geom.pad[0][0], geom.pad[1][0], dh, dw


def _max_pool2d_compiled(nb, x, geom):
    """One pass over the output (16x64x56x56 k3 s2: forward 47 -> 16 ms, see docs/kernels.md),
    the planes split over the threads; None when the input holds a NaN (or +inf with -inf),
    which the NumPy loop handles."""
    n, c, h, w = x.shape
    planes = np.ascontiguousarray(x).reshape(n * c, h, w)
    out = np.empty((n * c,) + geom.out_size, dtype=x.dtype)
    which = np.empty(out.shape, dtype=np.uint8 if math.prod(geom.kernel) < 256 else np.int32)
    g2 = _geom2d(geom)
    bad = np.zeros(n * c, dtype=bool)  # bad[lo]: a NaN in the planes [lo, hi)

    tiled = geom.kernel == (2, 2) and _simple(geom)

    def part(lo, hi):
        # the NaN test (one sum) runs in the thread too: NumPy's reduction releases the GIL
        if np.isnan(planes[lo:hi].sum()):
            bad[lo] = True
            return
        if tiled:
            nb.max_pool2x2_forward(planes[lo:hi], out[lo:hi], which[lo:hi])
        else:
            nb.max_pool2d_forward(planes[lo:hi], *g2, out[lo:hi], which[lo:hi])

    split_call(part, n * c, h * w, lambda lo, hi: (lo, hi))
    if bad.any():
        return None
    shape = (n, c) + geom.out_size
    return out.reshape(shape), which.reshape(shape)


def _max_pool_2x2(xp, x):
    """2x2 windows that tile an (N, C, H, W) input, as a tree of pairwise maxima: the two
    columns of every window, then its two rows (the cnn's first pool: 3.3 -> 2.2 ms against
    the loop over offsets). Ties keep the first element in (row, column) order, as the loop
    does; NaNs are left to the caller's fix-up."""
    n, c, h, w = x.shape
    left, right = x[..., 0::2], x[..., 1::2]
    col = (right > left).view(xp.uint8).reshape(n, c, h // 2, 2, w // 2)
    pairs = xp.maximum(left, right).reshape(n, c, h // 2, 2, w // 2)
    top, bottom = pairs[:, :, :, 0], pairs[:, :, :, 1]
    row = (bottom > top).view(xp.uint8)
    col_top, col_bottom = col[:, :, :, 0], col[:, :, :, 1]
    which = col_top + row * (2 + col_bottom - col_top)  # offset 2 * row + column
    return xp.maximum(top, bottom), which


def max_pool_scatter(xp, g, which, geom):
    """The adjoint of picking each window's maximum: route g to the argmax positions."""
    nb = _compiled(xp, g, geom)
    if nb is not None:
        n, c = g.shape[:2]
        g3 = np.ascontiguousarray(g).reshape((n * c,) + geom.out_size)
        w3 = np.ascontiguousarray(which).reshape((n * c,) + geom.out_size)
        if TILED_2X2 and geom.kernel == (2, 2) and _simple(geom) and w3.dtype == np.uint8:
            # every input position written once (g or 0): no zero fill
            out = np.empty((n * c,) + geom.in_size, dtype=g.dtype)
            zero = np.zeros(1, dtype=g.dtype)
            split_call(
                nb.max_pool2x2_scatter,
                n * c,
                math.prod(geom.in_size),
                lambda lo, hi: (g3[lo:hi], w3[lo:hi], zero, out[lo:hi]),
            )
            return out.reshape((n, c) + geom.in_size)
        out = np.zeros((n * c,) + geom.in_size, dtype=g.dtype)
        kh, kw, *rest = _geom2d(geom)
        # planes split over the threads (each writes, and maps the pages of, its own planes)
        split_call(
            nb.max_pool2d_scatter,
            n * c,
            math.prod(geom.in_size),
            lambda lo, hi: (g3[lo:hi], w3[lo:hi], kw, *rest, out[lo:hi]),
        )
        return out.reshape((n, c) + geom.in_size)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(geom.in_size, geom.pad))
    if _simple(geom):
        # The windows tile the input: every element is written once, straight from the
        # product (no zero fill, no temporary: 2x2 on 64x32x28x28, 2.8 -> 2.0 ms).
        out = xp.empty(g.shape[:2] + padded, dtype=g.dtype)
        for k, off in enumerate(offsets(geom.kernel)):
            xp.multiply(g, which == k, out=out[_slices(geom, off)])
        return out
    out = xp.zeros(g.shape[:2] + padded, dtype=g.dtype)
    overlap = geom.overlapping
    for k, off in enumerate(offsets(geom.kernel)):
        picked = g * (which == k)  # a product, not ``where``: see max_pool_forward
        if overlap:
            out[_slices(geom, off)] += picked
        else:  # windows are disjoint: each input position belongs to one window and offset
            out[_slices(geom, off)] = picked
    return xp.ascontiguousarray(out[_crop(geom)])


def max_pool_gather(xp, x, which, geom):
    """Pick, in each window, the element at the recorded kernel offset (max_pool_scatter's
    adjoint, used by double backward)."""
    xpad = _padded(xp, x, geom, 0)
    out = xp.zeros(which.shape, dtype=x.dtype)
    for k, off in enumerate(offsets(geom.kernel)):
        out += xpad[_slices(geom, off)] * (which == k)
    return out


def flat_indices(xp, which, geom):
    """Kernel-offset indices -> PyTorch's indices: flat positions in each input plane."""
    nd = len(geom.kernel)
    which = which.astype(xp.int64)
    flat = xp.zeros(which.shape, dtype=xp.int64)
    rest = math.prod(geom.kernel)
    for i, (k, s, d, (lo, _)) in enumerate(zip(geom.kernel, geom.stride, geom.dilation, geom.pad)):
        rest //= k
        off = (which // rest) % k
        shape = [1] * (nd + 2)
        shape[2 + i] = geom.out_size[i]
        pos = xp.arange(geom.out_size[i], dtype=xp.int64).reshape(shape) * s - lo + off * d
        flat = flat * geom.in_size[i] + pos
    return flat


class MaxPool(Function):
    """(values, indices) of N-d max pooling; the indices are PyTorch's flat plane positions."""

    @staticmethod
    def forward(ctx, x, geom, return_indices):
        ctx.geom = geom
        y, which = max_pool_forward(ctx.xp, x, geom)
        ctx.save_for_backward(which)
        if not return_indices:
            return y
        idx = flat_indices(ctx.xp, which, geom)
        ctx.mark_non_differentiable(idx)
        return y, idx

    @staticmethod
    def backward(ctx, grad, *_):
        (which,) = ctx.saved_tensors
        if ctx._tensor_mode:
            return MaxPoolScatter.apply(grad, which, ctx.geom), None, None
        return max_pool_scatter(ctx.xp, grad, which, ctx.geom), None, None


class MaxPoolScatter(Function):
    """Max pooling's backward as an op: g routed to the recorded argmax positions."""

    @staticmethod
    def forward(ctx, g, which, geom):
        ctx.geom, ctx.which = geom, which
        return max_pool_scatter(ctx.xp, g, which, geom)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return MaxPoolGather.apply(grad, ctx.which, ctx.geom), None, None
        return max_pool_gather(ctx.xp, grad, ctx.which, ctx.geom), None, None


class MaxPoolGather(Function):
    @staticmethod
    def forward(ctx, x, which, geom):
        ctx.geom, ctx.which = geom, which
        return max_pool_gather(ctx.xp, x, which, geom)

    @staticmethod
    def backward(ctx, grad):
        if ctx._tensor_mode:
            return MaxPoolScatter.apply(grad, ctx.which, ctx.geom), None, None
        return max_pool_scatter(ctx.xp, grad, ctx.which, ctx.geom), None, None


# average pooling lives in pooling_avg.py (imported last: it uses the helpers above)
from .pooling_avg import (  # noqa: E402,F401
    AvgPool,
    AvgPoolAdjoint,
    avg_divisor,
    avg_pool_sum,
    avg_pool_sum_adjoint,
)
