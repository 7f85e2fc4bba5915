"""Direct convolution at stride 1 with compiled register-blocked kernels (few channels).

For convolutions with few channels (16->16 3x3, 32->32 5x5, 3-D 16->32) the im2col + GEMM
paths spend about torch's whole step in three skinny GEMMs plus the gathers of their column
blocks (docs/kernels.md). Here the forward and the weight gradient are direct loops over the
zero-padded input (``_numba_conv_direct``: 8 output channels x 128 bytes of outputs kept in
vector registers over the whole reduction), and the input gradient, the transposed
convolution at stride 1, runs as the forward of g with the flipped kernel (``conv.py``'s
``_direct_transpose_geom``), so it takes this path too. No column matrix is made.

Each plane of the output (2-D: all of it; 3-D: one depth slice) is computed over wide rows:
the padded width, so that a kernel tap is one fixed offset into the flat padded input. The
``d * (k - 1)`` extra columns are cropped from the forward's output; in the weight gradient
they meet zeros of a widened copy of g (which is why an input with inf or NaN keeps the GEMM
path there: ``0 * inf`` would make a NaN that torch's gradient does not have).

Selected by ``use_direct`` (numba present, NumPy float32/float64, groups 1, 2-D or 3-D, unit
stride, output channels a multiple of 8 up to ``MAX_OUT``, input channels up to ``MAX_IN``,
one thread: ``conv_split`` runs its parts with one thread each). ``ENABLED = False`` switches
it off (A/B).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..backend.threads import num_threads

ENABLED = True
# the kernels' blocking (``_numba_conv_direct`` reads these): output channels a call, taps and
# output channels a weight-gradient call, bytes of outputs a forward call and of lanes a
# weight-gradient vector. numba's on-disk cache keys on the kernel file, not on these: after
# changing one, touch _numba_conv_direct.py so that its kernels compile again
OB, TB, WOB, VEC_BYTES, GVEC_BYTES = 8, 3, 8, 128, 64
# output channels at most (a multiple of 8), input channels at most: 1 thread, process time,
# forward / input gradient / weight gradient, GEMM paths -> direct: 128->128 on 8 x 16^2
# 8.3 / 9.4 / 13.0 -> 8.2 / 7.6 / 7.7 ms, 64->128 on 8 x 16^2 4.7 / 6.2 / 5.5 -> 3.0 / 3.4 / 5.0
MAX_OUT = 128
MAX_IN = 128
# computed positions (wide rows rounded up to whole vectors) per output, at most: small planes
# lose, 128->128 on 8 x 8^2 (1.5) 1.7 / 2.2 / 1.8 -> 2.0 / 2.6 / 2.5 ms, 256->256 on 4 x 7^2
# (1.31) 3.0 / 4.3 / 2.8 -> 3.4 / 4.3 / 4.6; 2-D 32^2 k3 computes 1.06, 16^2 and 3-D 16^3 1.13
MAX_WASTE = 1.25
CL_WGRAD = True  # the channels-last weight-gradient kernel (False: the lane-summing one, A/B)
MAX_WGRAD_CHANNELS = 256  # weight gradient: input x output channels, at most


_k = None  # the kernel module once loaded, False where numba is missing or EMBER_NUMBA=0


def available() -> bool:
    """Whether the compiled kernels load (numba installed, ``EMBER_NUMBA`` not ``0``); numba
    is imported on the first call only, so ``import ember`` does not pay for it."""
    global _k
    if _k is None:
        _k = False
        if os.environ.get("EMBER_NUMBA", "1") != "0":
            from . import _numba_conv_direct  # (numba is an optional extra, "fast")

            if _numba_conv_direct.AVAILABLE:
                _k = _numba_conv_direct
    return bool(_k)


def _plan(x_shape, itemsize: int, geom):
    """(padded sizes, planes, plane step, q, qpad, offsets) of the wide-row layout."""
    nd = len(geom.kernel)
    ps = tuple(n + lo + hi for n, (lo, hi) in zip(x_shape[2:], geom.pad))
    out = geom.out_size
    wp = ps[-1]
    npl = out[0] if nd == 3 else 1
    step = ps[-2] * wp if nd == 3 else 0
    q = out[-2] * wp
    jb = VEC_BYTES // itemsize
    qpad = -(-q // jb) * jb
    strides = [math.prod(ps[i + 1 :]) for i in range(nd)]
    offs = np.array(
        [
            sum(i * d * s for i, d, s in zip(idx, geom.dilation, strides))
            for idx in np.ndindex(*geom.kernel)
        ],
        dtype=np.int64,
    )
    return ps, npl, step, q, qpad, offs


def use_direct(xp, x, w_shape, geom) -> bool:
    """Whether the direct kernels take this convolution (module docstring)."""
    if not ENABLED or xp is not np or x.dtype.char not in "fd":
        return False
    nd = len(geom.kernel)
    if nd not in (2, 3) or geom.groups != 1 or any(s != 1 for s in geom.stride):
        return False
    o, c = w_shape[0], w_shape[1]
    if o % OB or o > MAX_OUT or c > MAX_IN or math.prod(geom.kernel) < 2:
        return False
    if 0 in x.shape or 0 in geom.out_size or num_threads() != 1 or not available():
        return False
    _, npl, _, _, qpad, _ = _plan(x.shape, x.dtype.itemsize, geom)
    return npl * qpad <= MAX_WASTE * math.prod(geom.out_size)


def use_direct_weight_grad(xp, x, w_shape, geom) -> bool:
    """Whether the direct kernel takes the weight gradient: ``use_direct``, and input channels
    a multiple of 64 bytes of lanes (16 float32; the channels-last kernel) or at most
    ``MAX_WGRAD_CHANNELS`` input x output channels (the kernel that sums lanes). 1 thread,
    process time, weight gradient alone, GEMM path -> channels-last kernel: 16->16 on 8 x 32^2
    k3 1.45 -> 0.93 ms, 64->64 on 8 x 16^2 3.20 -> 2.59, 3-D 16->32 on 2 x 16^3 5.2 -> 4.1,
    32->32 k5 on 8 x 32^2 10.3 -> 7.0. The lane-summing kernel (24 products per 11 vector
    loads, along positions) only wins with few channels: 3->16 0.36 -> 0.19, but 64->64 2.0
    -> 4.2."""
    if not use_direct(xp, x, w_shape, geom):
        return False
    lanes = GVEC_BYTES // x.dtype.itemsize
    return w_shape[1] % lanes == 0 or w_shape[0] * w_shape[1] <= MAX_WGRAD_CHANNELS


def _flat_input(x, geom, ps, need):
    """The zero-padded input flat per channel, (N, C, P), with spare zeros at the end for the
    last wide row's reads."""
    n, c = x.shape[:2]
    size = math.prod(ps)
    xf = np.zeros((n, c, max(size, need)), dtype=x.dtype)
    inner = (slice(None), slice(None)) + tuple(
        slice(lo, lo + s) for s, (lo, _) in zip(x.shape[2:], geom.pad)
    )
    xf[:, :, :size].reshape((n, c) + ps)[inner] = x
    return xf


def _crop(a, npl, q, wp, out):
    """The outputs (N, O, *out) of a wide-row array (N, O, npl, qpad), as a view."""
    n, o = a.shape[:2]
    v = a[..., :q].reshape(n, o, npl, out[-2], wp)[..., : out[-1]]
    return v.reshape((n, o) + tuple(out)) if len(out) == 3 else v[:, :, 0]


def direct_forward(x, w, b, geom):
    """conv(x, w) + b by the direct kernel (``use_direct`` must hold)."""
    ps, npl, step, q, qpad, offs = _plan(x.shape, x.dtype.itemsize, geom)
    xf = _flat_input(np.ascontiguousarray(x), geom, ps, (npl - 1) * step + qpad + offs[-1])
    o, c = w.shape[:2]
    # (O, C, T) -> (O / 8, C, T, 8): a tap's 8 weights side by side for the broadcasts
    wk = np.ascontiguousarray(
        w.astype(x.dtype, copy=False).reshape(o // OB, OB, c, -1).transpose(0, 2, 3, 1)
    )
    y = np.empty((x.shape[0], o, npl, qpad), dtype=x.dtype)
    _k.forward(xf, wk, offs, step, y)
    y = np.ascontiguousarray(_crop(y, npl, q, ps[-1], geom.out_size))
    if b is not None:
        y += b.reshape((o,) + (1,) * len(geom.kernel))
    return y


def direct_weight_grad(x, g, w_shape, geom):
    """d conv(x, w) / dw applied to g by the direct kernel, or None where x is not finite."""
    if not np.isfinite(x).all():
        return None
    ps, npl, step, q, qpad, offs = _plan(x.shape, x.dtype.itemsize, geom)
    xf = _flat_input(np.ascontiguousarray(x), geom, ps, (npl - 1) * step + qpad + offs[-1])
    n, o = g.shape[:2]
    gw = np.zeros((n, o, npl, qpad), dtype=x.dtype)
    _crop(gw, npl, q, ps[-1], geom.out_size)[...] = g
    t = len(offs)
    t3 = -(-t // TB) * TB
    offs3 = np.zeros(t3, dtype=np.int64)  # padded taps read offset 0; their sums are dropped
    offs3[:t] = offs
    lanes = GVEC_BYTES // x.dtype.itemsize
    if CL_WGRAD and w_shape[1] % lanes == 0:
        # channels-last input: a vector of input channels against g's scalars, no lane sums
        xcl = np.ascontiguousarray(xf.transpose(0, 2, 1))
        dwv = np.zeros((o, t3, w_shape[1]), dtype=x.dtype)
        _k.weight_grad_cl(xcl, gw, offs3, step, dwv)
        return np.ascontiguousarray(dwv[:, :t].transpose(0, 2, 1)).reshape(w_shape)
    dwp = np.zeros((o, w_shape[1], t3, lanes), dtype=x.dtype)
    _k.weight_grad(xf, gw, offs3, step, dwp)
    return dwp[:, :, :t].sum(axis=-1).reshape(w_shape)
