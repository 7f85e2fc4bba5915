"""Depthwise convolution (one input and one output channel per group): a loop over kernel taps.

im2col + GEMM has too little work per column here (a k-fold copy of the input feeding
matrix-vector products), so each kernel tap is one multiply-add of a shifted input by a
per-channel scalar. At stride 1 the taps run on the flattened padded spatial block: tap
``(i, j)`` of a 2-D kernel is the flat shift ``i * Wp + j``, so every pass is one long contiguous
run instead of ``N * C * H`` rows of ``W`` elements (which left NumPy in its per-row overhead:
8 x 64 x 16 x 16, k3, 1 thread: forward 2.1 -> 0.6 ms, process time). The outputs that fall in
the padding columns are computed and dropped (``Wp / W`` extra work). Strided convolutions keep
the per-tap strided slices.
"""

from __future__ import annotations

import os

import numpy as np

from ..backend.mkl_gemm import matmul as mm
from ..backend.threads import num_threads
from ._kernel_split import split_call

_numba = None  # ``_numba_depthwise`` once loaded; False when unavailable

# The compiled kernels split their samples across threads only from this many output values a
# thread: on this machine's two vCPUs the split lost below it (2 threads, wall time, quiet
# machine, same process: 8 x 64 x 16^2 k3 1.07 -> 1.14 ms a step, 32 x 32 x 32^2 7.46 -> 7.93)
# and won above it (8 x 128 x 56^2 29.4 -> 26.0)
MIN_PER_THREAD = 1 << 20
# 3x3 at stride 1: ``_numba_depthwise_k3`` (nine taps a pass over each output row; the input
# gradient as the flipped kernel's forward), False: the per-tap kernels (A/B)
K3 = True
_k3 = None
# ... whose calls at two or more threads run their parallel variants (numba's threads, the
# planes in blocks) from this many output values: below it the serial kernel on the calling
# thread (``MIN_PER_THREAD`` for the others)
K3_MIN_PAR = 1 << 16
# ... and where the width padding is "same" (left = right = the width dilation, under the
# width), ``_numba_depthwise_k3f``: the padding, the bias and the bias gradient inside the
# kernels, on the unpadded input (8 x 64 x 16^2 k3, 1 thread, process time: forward 0.204 ->
# 0.077 ms, weight gradient 0.174 -> 0.138 with the bias gradient); False: pad first (A/B)
FUSED = True
_k3f = None


def _compiled(xp, geom, *arrays):
    """The compiled 2-D depthwise kernels when they apply: NumPy float32/float64 arrays of one
    dtype, 2-D, numba installed, ``EMBER_NUMBA`` not ``0``; else None."""
    global _numba
    if xp is not np or len(geom.kernel) != 2:
        return None
    dt = arrays[0].dtype
    if dt not in (np.float32, np.float64) or any(a.dtype != dt for a in arrays):
        return None
    if any(lo < 0 or hi < 0 for lo, hi in geom.pad) or 0 in arrays[0].shape:
        return None
    if _numba is None:
        _numba = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_depthwise  # (numba is an optional extra, "fast")

            if _numba_depthwise.AVAILABLE:
                _numba = _numba_depthwise
    return _numba or None


def _use_k3(geom) -> bool:
    """Whether the 3x3 stride-1 kernels (``K3``) take this geometry."""
    global _k3
    if not K3 or not _stride1(geom) or tuple(geom.kernel) != (3, 3):
        return False
    if _k3 is None:
        from . import _numba_depthwise_k3

        _k3 = _numba_depthwise_k3
    return True


def _use_fused(geom, width: int) -> bool:
    """Whether ``_numba_depthwise_k3f`` (``FUSED``) takes this geometry: a 3x3 kernel at stride
    1 whose width padding is the width dilation on both sides, under the input's width."""
    global _k3f
    if not FUSED or not _use_k3(geom):
        return False
    (lo, hi), d = geom.pad[1], geom.dilation[1]
    if not lo == hi == d or d >= width:
        return False
    if _k3f is None:
        from . import _numba_depthwise_k3f

        _k3f = _numba_depthwise_k3f
    return True


class _K3Call:
    """A 3x3 kernel of ``_numba_depthwise_k3``; at two or more threads its parallel variant
    (from ``K3_MIN_PAR`` padded input values; ``conv_direct._call`` sets numba's threads), and
    ``split_call`` then hands it the whole batch (``_min_per_thread``)."""

    def __init__(self, name, mod=None):
        self.name, self.mod = name, mod

    def __call__(self, *args):
        from .conv_direct import MIN_KERNEL_MACS, _call, with_kernel_threads

        mod = self.mod or _k3
        nt = num_threads()
        if nt < 2 or args[0].size < K3_MIN_PAR:
            getattr(mod, self.name)(*args)
        else:
            with_kernel_threads(nt, lambda: _call(self.name, MIN_KERNEL_MACS, *args, mod=mod))


def _min_per_thread(fn) -> int:
    """``split_call``'s least output values a thread: none for the parallel 3x3 kernels."""
    return 1 << 62 if isinstance(fn, _K3Call) else MIN_PER_THREAD


def _kernel_and_steps(kern, name, geom):
    """The kernel for this stride (the flat-shift ``*_s1`` form at stride 1, the nine-tap one
    for 3x3: ``_use_k3``) and its step arguments (strides, then dilations; the ``_s1``
    kernels take the dilations only)."""
    if _stride1(geom):
        if name != "input_grad" and _use_k3(geom):
            return _K3Call(name + "_s1"), geom.dilation
        return getattr(kern, name + "_s1"), geom.dilation
    return getattr(kern, name), (*geom.stride, *geom.dilation)


def _fused_forward(x, w, b, geom):
    """y = conv(x, w) + b by ``_numba_depthwise_k3f`` (``_use_fused``)."""
    x = np.ascontiguousarray(x)
    w3 = np.ascontiguousarray(w).reshape(w.shape[0], 3, 3)
    b = np.empty(0, x.dtype) if b is None else np.ascontiguousarray(b, dtype=x.dtype)
    y = np.empty(x.shape[:2] + geom.out_size, dtype=x.dtype)
    (top, bottom), (dh, dw) = geom.pad[0], geom.dilation
    _K3Call("forward", _k3f)(x, w3, b, top, bottom, dh, dw, y)
    return y


def _fused_weight_grad(x, g, w_shape, geom):
    """(dw, db) by ``_numba_depthwise_k3f`` (``_use_fused``): per-sample sums, then over N."""
    x, g = np.ascontiguousarray(x), np.ascontiguousarray(g)
    gw = np.empty(g.shape[:2] + (3, 3), dtype=g.dtype)
    gb = np.empty(g.shape[:2], dtype=g.dtype)
    (top, bottom), (dh, dw) = geom.pad[0], geom.dilation
    _K3Call("weight_grad", _k3f)(x, g, top, bottom, dh, dw, gw, gb)
    return gw.sum(axis=0).reshape(w_shape), gb.sum(axis=0)


def _compiled_forward(kern, x, w, geom):
    """(y, the padded input): the weight gradient reuses the latter instead of padding again
    (8 x 64 x 16 x 16, k3: one of the step's two pads, ~0.25 of ~3 ms, 1 thread)."""
    xpad = np.ascontiguousarray(pad_spatial(np, x, geom.pad))
    w3 = np.ascontiguousarray(w).reshape(w.shape[0], *geom.kernel)
    y = np.empty(x.shape[:2] + geom.out_size, dtype=x.dtype)
    fn, st = _kernel_and_steps(kern, "forward", geom)
    args = lambda lo, hi: (xpad[lo:hi], w3, *st, y[lo:hi])  # noqa: E731
    split_call(fn, x.shape[0], y[0].size, args, _min_per_thread(fn))
    return y, xpad


def _compiled_input_grad(kern, g, w, geom):
    tgeom = _direct_geom(geom) if _use_k3(geom) else None
    if tgeom is not None:  # the flipped kernel's forward: 8 x 64 x 16^2, 1 thread, ms:
        # per-tap scatter + crop 0.25 -> pad of g + nine-tap forward ~0.12 -> fused 0.08
        flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1])
        if _use_fused(tgeom, g.shape[3]):
            return _fused_forward(g, flipped, None, tgeom)
        return _compiled_forward(kern, g, flipped, tgeom)[0]
    g = np.ascontiguousarray(g)
    w3 = np.ascontiguousarray(w).reshape(w.shape[0], *geom.kernel)
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(geom.in_size, geom.pad))
    acc = np.zeros(g.shape[:2] + padded, dtype=g.dtype)
    fn, st = _kernel_and_steps(kern, "input_grad", geom)
    args = lambda lo, hi: (g[lo:hi], w3, *st, acc[lo:hi])  # noqa: E731
    split_call(fn, g.shape[0], g[0].size, args, MIN_PER_THREAD)
    return np.ascontiguousarray(acc[_crop(geom)])


def _compiled_weight_grad(kern, x, g, w_shape, geom, xpad=None):
    padded = x.shape[:2] + tuple(s + lo + hi for s, (lo, hi) in zip(geom.in_size, geom.pad))
    if xpad is None or xpad.shape != padded or xpad.dtype != x.dtype:  # not the forward's
        xpad = np.ascontiguousarray(pad_spatial(np, x, geom.pad))
    g = np.ascontiguousarray(g)
    part = np.empty((g.shape[0], g.shape[1], *geom.kernel), dtype=g.dtype)  # per sample
    fn, st = _kernel_and_steps(kern, "weight_grad", geom)
    split_call(
        fn,
        g.shape[0],
        g[0].size,
        lambda lo, hi: (xpad[lo:hi], g[lo:hi], *st, part[lo:hi]),
        _min_per_thread(fn),
    )
    return part.sum(axis=0).reshape(w_shape)


def is_depthwise(w_shape, geom) -> bool:
    return geom.groups > 1 and w_shape[0] == geom.groups and w_shape[1] == 1


def offsets(kernel):
    """Every kernel tap as an index tuple, in the weight's (row-major) order."""
    if len(kernel) == 1:
        return [(i,) for i in range(kernel[0])]
    return [(i,) + rest for i in range(kernel[0]) for rest in offsets(kernel[1:])]


def pad_spatial(xp, x, pad):
    """Zero-pad the spatial dims of an (N, C, *S) array (a zeros + slice copy: faster than pad)."""
    if not any(lo or hi for lo, hi in pad):
        return x
    shape = x.shape[:2] + tuple(n + lo + hi for n, (lo, hi) in zip(x.shape[2:], pad))
    out = xp.zeros(shape, dtype=x.dtype)
    out[
        (slice(None), slice(None))
        + tuple(slice(lo, lo + n) for n, (lo, _) in zip(x.shape[2:], pad))
    ] = x
    return out


def tap_slices(geom, offset):
    """The strided slice of a padded (., ., *S) array that kernel tap ``offset`` sees."""
    return (slice(None), slice(None)) + tuple(
        slice(o * d, o * d + s * (m - 1) + 1, s)
        for o, d, s, m in zip(offset, geom.dilation, geom.stride, geom.out_size)
    )


def _crop(geom):
    return (slice(None), slice(None)) + tuple(
        slice(lo, lo + s) for s, (lo, _) in zip(geom.in_size, geom.pad)
    )


def _channel_column(w, k, nd):
    return w.reshape(w.shape[0], -1)[:, k].reshape((w.shape[0],) + (1,) * nd)


# ---- stride 1: channel-major flat shifts -------------------------------------------------------
class _Frame:
    """Stride-1 depthwise convolution on a channel-major (C, N, *padded) copy of the input,
    flattened per channel: output (n, o) lives at flat index ``n * size + sum(o_i * st_i)``
    (``st``: the padded block's row-major strides) and kernel tap t reads ``sum(t_i * d_i * st_i)``
    further on. ``total`` flat outputs cover every sample; those that fall in the padding are
    computed and dropped."""

    def __init__(self, geom, n):
        self.padded = tuple(s + lo + hi for s, (lo, hi) in zip(geom.in_size, geom.pad))
        st, acc = [], 1
        for p in reversed(self.padded):
            st.append(acc)
            acc *= p
        self.st, self.size = tuple(reversed(st)), acc
        self.total = (n - 1) * acc + sum((m - 1) * s for m, s in zip(geom.out_size, self.st)) + 1
        self.n, self.geom = n, geom

    def view(self, xp, flat):
        """(C, total) -> (C, N, *out): the valid outputs, as a strided view."""
        item = flat.itemsize
        strides = (flat.strides[0], self.size * item) + tuple(s * item for s in self.st)
        shape = (flat.shape[0], self.n) + tuple(self.geom.out_size)
        return xp.lib.stride_tricks.as_strided(flat, shape, strides)


def _columns(xp, x, fr):
    """(C, taps, total): row t of channel c is channel c's padded input shifted by tap t."""
    n, c = x.shape[:2]
    g = fr.geom
    xc = xp.zeros((c, n) + fr.padded, dtype=x.dtype)
    xc[
        (slice(None), slice(None))
        + tuple(slice(lo, lo + s) for s, (lo, _) in zip(g.in_size, g.pad))
    ] = x.swapaxes(0, 1)
    item = xc.itemsize
    v = xp.lib.stride_tricks.as_strided(
        xc,
        (c,) + tuple(g.kernel) + (fr.total,),
        (xc.strides[0],) + tuple(s * d * item for s, d in zip(fr.st, g.dilation)) + (item,),
    )
    return xp.ascontiguousarray(v).reshape(c, -1, fr.total)


def _forward_frame(xp, x, w, geom):
    """y (N, C, *out) and the columns, by one batched (1 x taps) @ (taps x total) per channel:
    8 x 64 x 16 x 16, k3, 1 thread: 1.5 ms for the per-tap multiply-adds -> 1.25 ms, and the
    columns make the weight gradient one matrix-vector product per channel."""
    fr = _Frame(geom, x.shape[0])
    cols = _columns(xp, x, fr)
    y = mm(w.reshape(w.shape[0], 1, -1), cols).reshape(w.shape[0], -1)
    return xp.ascontiguousarray(fr.view(xp, y).swapaxes(0, 1)), cols


def _direct_geom(geom):
    """The stride-1 transposed convolution as a direct one (flipped kernel), or None."""
    pad = tuple(
        (d * (k - 1) - lo, d * (k - 1) - hi)
        for (lo, hi), d, k in zip(geom.pad, geom.dilation, geom.kernel)
    )
    if any(lo < 0 or hi < 0 for lo, hi in pad):
        return None
    return type(geom)(
        geom.stride, pad, geom.dilation, geom.groups, geom.kernel, geom.out_size, geom.in_size
    )


def _stride1(geom) -> bool:
    return all(s == 1 for s in geom.stride)


def depthwise_forward(xp, x, w, b, geom):
    """y = conv(x, w) + b; returns (y, cols): the frame's columns, the padded input on the
    compiled path, None where the strided loop ran."""
    nd = len(geom.kernel)
    cols = None
    kern = _compiled(xp, geom, x, w)
    if kern is not None and _use_fused(geom, x.shape[3]):
        return _fused_forward(x, w, b, geom), None  # (the bias added in the kernel)
    if kern is not None:
        y, cols = _compiled_forward(kern, x, w, geom)
    elif _stride1(geom):
        y, cols = _forward_frame(xp, x, w, geom)
    else:
        xpad = pad_spatial(xp, x, geom.pad)
        y = tmp = None
        for k, offset in enumerate(offsets(geom.kernel)):
            src = xpad[tap_slices(geom, offset)]
            if y is None:
                y = src * _channel_column(w, k, nd)
                tmp = xp.empty_like(y)
            else:
                y += xp.multiply(src, _channel_column(w, k, nd), out=tmp)
    if b is not None:
        y += b.reshape((-1,) + (1,) * nd)
    return y, cols


def depthwise_input_grad(xp, g, w, geom):
    kern = _compiled(xp, geom, g, w)
    if kern is not None:
        return _compiled_input_grad(kern, g, w, geom)
    nd = len(geom.kernel)
    tgeom = _direct_geom(geom) if _stride1(geom) else None
    if tgeom is not None:  # the transposed convolution is the flipped kernel's convolution
        flip = (slice(None), slice(None)) + (slice(None, None, -1),) * nd
        return _forward_frame(xp, g, xp.ascontiguousarray(w[flip]), tgeom)[0]
    padded = tuple(s + lo + hi for s, (lo, hi) in zip(geom.in_size, geom.pad))
    acc = xp.zeros(g.shape[:2] + padded, dtype=g.dtype)
    tmp = xp.empty_like(g)
    for k, offset in enumerate(offsets(geom.kernel)):
        acc[tap_slices(geom, offset)] += xp.multiply(g, _channel_column(w, k, nd), out=tmp)
    return xp.ascontiguousarray(acc[_crop(geom)])


def depthwise_weight_grad(xp, x, g, w_shape, geom, cols=None):
    """dw; ``cols``: what the forward kept (the frame's columns of x at stride 1, the padded
    x on the compiled path), recomputed when not given."""
    kern = _compiled(xp, geom, x, g)
    if kern is not None and _use_fused(geom, x.shape[3]):
        return _fused_weight_grad(x, g, w_shape, geom)[0]
    if kern is not None:
        return _compiled_weight_grad(kern, x, g, w_shape, geom, cols)
    if _stride1(geom):
        fr = _Frame(geom, x.shape[0])
        if cols is None or cols.ndim != 3:  # (the padded x of the compiled path: not columns)
            cols = _columns(xp, x, fr)
        gz = xp.zeros((g.shape[1], fr.total), dtype=g.dtype)
        fr.view(xp, gz)[...] = g.swapaxes(0, 1)
        return mm(cols, gz[:, :, None]).reshape(w_shape)
    xpad = pad_spatial(xp, x, geom.pad)
    axes = (0,) + tuple(range(2, g.ndim))
    tmp = xp.empty_like(g)
    taps = [
        xp.multiply(xpad[tap_slices(geom, offset)], g, out=tmp).sum(axis=axes)
        for offset in offsets(geom.kernel)
    ]
    return xp.stack(taps, axis=1).reshape(w_shape)


def depthwise_weight_bias_grad(xp, x, g, w_shape, geom):
    """(dw, db) in one pass where ``_numba_depthwise_k3f`` takes the geometry, else None."""
    if _compiled(xp, geom, x, g) is None or not _use_fused(geom, x.shape[3]):
        return None
    return _fused_weight_grad(x, g, w_shape, geom)


__all__ = [
    "is_depthwise",
    "offsets",
    "pad_spatial",
    "tap_slices",
    "depthwise_forward",
    "depthwise_input_grad",
    "depthwise_weight_grad",
    "depthwise_weight_bias_grad",
]
