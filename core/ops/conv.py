"""Convolution (N-d) and transposed convolution by im2col + one GEMM per group.

Measured on the DESIGN.md §7 cnn shapes (1 thread, float32, conv 32->64 on 64 x 14 x 14):
gathering the windows into a ``(groups, C/g * prod(kernel), N * L)`` column matrix and doing
one GEMM (forward ~6.5 ms) beat the ``(N * L, C * k)`` layout (~10 ms: its im2col copy is
slow) and nine shifted GEMMs, one per kernel tap (~13 ms). The input gradient is one GEMM then
col2im as a strided accumulation loop over kernel taps (the loop runs ~3 ms; ``add.at`` is far
slower); it is also the forward of the transposed convolution. Layers with fewer column rows
than output channels (a first layer) use a per-sample column layout instead, whose product
comes out in (N, C_out, L) order without a transpose (conv 1->32 forward: 2.1 -> 1.0 ms).
Depthwise convolutions have their own kernels (``conv_depthwise``). By shape (issue 23, measured
with benchmarks/kernels.py): 32-128 input channels in 2-D/3-D take channels-last columns
(``conv_cl``); under OpenBLAS at most 16 output channels take the (N * L, R) @ (R, O) GEMM
orientation (MKL keeps (O, R) @ (R, N * L): ``_narrow_out``); weight gradients over many
columns compute dw^T; and at stride 1 the input gradient is a direct
convolution with the flipped kernel instead of GEMM + col2im (unless g has fewer columns than
output channels). At one thread, stride-1 and stride-2 2-D/3-D convolutions with few
channels take the compiled direct kernels (``conv_direct``: forward, weight gradient, and the
input gradient as the flipped kernel's forward, at stride 2 per stride phase); a large
column matrix with a small weight is made and used block by block (``conv_blocked``); 1x1
stride-1 convolutions are per-sample GEMMs, no columns. At two or more threads with MKL on,
``conv_split`` runs these one-thread choices on the whole batch or on parts of it, one a
thread; without MKL, the direct kernels' choices on the whole batch.

Three Functions (in ``conv_functions``, re-exported here) close over each other so that double
backward works: ``Conv`` (y = x * w + b), ``ConvTranspose`` (its input gradient, plus a bias)
and ``ConvWeightGrad`` (its weight gradient); the backward of each is made of the other two.
"""

from __future__ import annotations

import math

import numpy as np

from ..backend import mkl_gemm as _mkl
from ..backend.mkl_gemm import addmm_, matmul_into
from ..backend.mkl_gemm import matmul as mm
from ..backend.threads import num_threads
from . import conv_direct_cl as _dcl
from . import conv_direct_narrow as _narrow
from .conv_blocked import blocked_forward, blocked_weight_grad, use_blocked
from .conv_cl import (
    cols_from_padded,
    conv_forward_cl,
    im2col_cl,
    use_channels_last,
    weight_grad_cl,
)
from .conv_columns import col2im, im2col
from .conv_depthwise import (
    depthwise_forward,
    depthwise_input_grad,
    depthwise_weight_grad,
    is_depthwise,
)
from .conv_direct import (
    DirectCols,
    direct_forward,
    direct_input_grad,
    direct_weight_grad,
    use_direct,
    use_direct_input_grad,
    use_direct_weight_grad,
)
from .conv_split import split_forward, split_input_grad, split_weight_grad


class ConvGeom:
    """The geometry of one convolution, seen from the convolution (not its transpose) side.

    ``in_size``: spatial size of the convolution's input (the transposed convolution's output);
    ``out_size``: spatial size of the convolution's output; ``pad``: (low, high) per dim.
    """

    __slots__ = ("stride", "pad", "dilation", "groups", "kernel", "in_size", "out_size")

    def __init__(self, stride, pad, dilation, groups, kernel, in_size, out_size=None):
        self.stride, self.pad, self.dilation = tuple(stride), tuple(pad), tuple(dilation)
        self.groups, self.kernel, self.in_size = int(groups), tuple(kernel), tuple(in_size)
        if out_size is None:
            out_size = tuple(
                (n + lo + hi - d * (k - 1) - 1) // s + 1
                for n, (lo, hi), d, k, s in zip(in_size, pad, dilation, kernel, stride)
            )
        self.out_size = tuple(out_size)

    def __repr__(self) -> str:
        return "ConvGeom(" + ", ".join(f"{k}={getattr(self, k)}" for k in self.__slots__) + ")"


# GEMM orientation by shape and by the BLAS that runs the product (1 thread, process time; see
# the comments at the uses). The choices that depend on which BLAS is active live here only.
NARROW_OUT = 16  # OpenBLAS: forward with at most this many output channels: cols^T @ w^T
# MKL: never; its (O, R) @ (R, N * L) is the faster one (issue 23, h13: forward 16->16 on
# 4 x 32^2 0.61 -> 0.50 ms, 16->8 0.65 -> 0.51, 8->16 on 8 x 32^2 0.66 -> 0.50)
NARROW_OUT_MKL = 0
WIDE_COLS = 1024  # weight gradients over at least this many columns: (cols @ g^T)^T (both)
# ... both only with at least this many column rows (C * prod(k)): on a first layer's 27 rows
# the A/B (3->16 on 8 x 32 x 32, k3) gave 3.9 -> 4.9 ms, within the ~15% noise of the loaded
# machine, so the measured-neutral old orientation stays there
MIN_ROWS = 64


def _mkl_runs(flops: int) -> bool:
    """Whether mkl_gemm sends a product of ``flops`` multiply-adds to MKL now (without loading
    MKL: before it is loaded the products run on NumPy's OpenBLAS)."""
    return (
        _mkl._enabled is True
        and flops >= _mkl.MIN_FLOPS
        and not (flops >= _mkl.MULTI_FLOPS and num_threads() > 1)
    )


def _narrow_out(flops: int) -> int:
    """``NARROW_OUT`` of the BLAS that runs a forward product of ``flops`` multiply-adds."""
    return NARROW_OUT_MKL if _mkl_runs(flops) else NARROW_OUT


# Grouped products of fewer multiply-adds a group than this go to NumPy's stacked matmul when
# MKL would not take them: its C loop makes the same BLAS call per group as the Python loop
# below (bitwise the same result) without ~15 us of Python per group. RegNet's 8-channel groups
# (issue 23; 1 thread, (G, 8, 72) @ (G, 72, n)): G 55, n 8: 0.126 -> 0.019 ms; G 26, n 128:
# 0.155 -> 0.028; G 13, n 512: 0.31 -> 0.15. Larger groups keep the loop, which measured as
# fast or faster there (G 64, 16 x 144 @ 144 x 1568 with a transposed operand: 13.2 vs 24.3).
STACKED_MAX_FLOPS = 1 << 19


def _gemm(xp, a, b):
    """(G, m, k) @ (G, k, n) as one 2-D GEMM per group: NumPy's stacked matmul leaves BLAS for
    a slow loop when an operand is a transposed view (measured 5-10x slower on grouped convs)
    on large groups; small groups go to it whole (``STACKED_MAX_FLOPS``)."""
    if a.shape[0] == 1:
        return mm(a[0], b[0])[None]
    flops = a.shape[1] * a.shape[2] * b.shape[2]
    if xp is np and flops < STACKED_MAX_FLOPS and not _mkl_runs(flops):
        return np.matmul(a, b)
    out = xp.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=xp.result_type(a, b))
    for g in range(a.shape[0]):
        matmul_into(xp, a[g], b[g], out[g])
    return out


def _channels_first(xp, g, groups):
    """(N, O, *out) -> (groups, O/g, N * L), contiguous."""
    nd = g.ndim - 2
    gt = xp.ascontiguousarray(g.transpose((1, 0) + tuple(range(2, 2 + nd))))
    return gt.reshape(groups, g.shape[1] // groups, -1)


def conv_forward(xp, x, w, b, geom: ConvGeom, batched: bool | None = None):
    """y = conv(x, w) + b; also returns the columns (for the weight gradient).

    The columns come in one of three layouts: channels-last (N * L, prod(k) * C) for many input
    channels (``conv_cl``), else those of ``im2col``: by default the per-sample layout when the
    output is wider than the columns (few input taps, as in a first layer), where saving the
    output's transpose outweighs transposing the columns in the backward.
    """
    if is_depthwise(w.shape, geom):
        return depthwise_forward(xp, x, w, b, geom)
    if batched is None:  # at two threads: one-thread algorithms on parts (conv_split)
        split = split_forward(xp, x, w, b, geom, conv_forward)
        if split is not None:
            return split
    n, nd, groups = x.shape[0], len(geom.kernel), geom.groups
    if batched is None and _pointwise(geom):
        # 1x1, stride 1, no padding: y[n] = W @ x[n], no columns at all; x itself is the
        # per-sample column layout the weight gradient reads (8 x 256 -> 64 x 16 x 16, 1
        # thread: 1.45 -> 0.94 ms)
        x3 = xp.ascontiguousarray(x).reshape(n, x.shape[1], -1)
        if ONE_PIXEL and x3.shape[2] == 1:  # one pixel (squeeze-excite): see _ONE_PIXEL
            y = mm(x3[:, :, 0], w.reshape(w.shape[0], -1).T)
            if b is not None:
                y += b
            return y.reshape((n, w.shape[0]) + geom.out_size), x3[:, None]
        y = mm(w.reshape(w.shape[0], -1), x3)
        if b is not None:
            y += b[:, None]
        return y.reshape((n, w.shape[0]) + geom.out_size), x3[:, None]
    if batched is None and _dcl.use_direct_cl(xp, x, w.shape, geom):
        # many channels on small planes: the channels-last direct kernel (conv_direct_cl); its
        # padded channels-last input is kept for the weight gradient's columns (``ClCols``)
        return _dcl.direct_cl_forward(x, w, b, geom, keep=True)
    if batched is None and use_direct(xp, x, w.shape, geom):
        # few channels: the compiled direct kernel (conv_direct); also the stride-1 input
        # gradient's path, a direct convolution of g with the flipped kernel. The padded input
        # is kept for a direct weight gradient (``DirectCols``): 16->32 s2 on 8 x 32^2, 0.12 ms
        return direct_forward(x, w, b, geom, use_direct_weight_grad(xp, x, w.shape, geom))
    if batched is None and use_blocked(xp, x, w.shape, geom):
        return blocked_forward(x, w, b, geom), None  # the weight gradient gathers its own
    if batched is None and use_channels_last(x.shape[1], groups, geom.kernel):
        return conv_forward_cl(xp, x, w, b, geom)
    w3 = w.reshape(groups, w.shape[0] // groups, -1)
    if batched is None:
        batched = w3.shape[2] < w3.shape[1]
    cols = im2col(xp, x, geom, batched)
    if batched:
        y = xp.matmul(w3, cols).reshape(n, w.shape[0], -1)
        if b is not None:
            y += b[:, None]
        return y.reshape((n, w.shape[0]) + geom.out_size), cols
    if (
        groups == 1
        and w.shape[0] <= _narrow_out(w.size * cols.shape[2])
        and cols.shape[2] >= WIDE_COLS
        and cols.shape[1] >= MIN_ROWS
    ):
        # few output channels: (N * L, R) @ (R, O) keeps BLAS on its fast path where
        # (O, R) @ (R, N * L) does not (16 x 144 @ 144 x 8192: 2.46 -> 1.68 ms, 1 thread)
        yt = mm(cols[0].T, w3[0].T)
        if b is not None:
            yt += b
        y = yt.reshape(n, -1, w.shape[0]).transpose(0, 2, 1)
        return xp.ascontiguousarray(y).reshape((n, w.shape[0]) + geom.out_size), cols
    y = _gemm(xp, w3, cols).reshape(w.shape[0], -1)
    if b is not None:
        y += b[:, None]
    y = y.reshape((w.shape[0], n) + geom.out_size)
    return xp.ascontiguousarray(y.transpose((1, 0) + tuple(range(2, 2 + nd)))), cols


# At stride 1 the transposed convolution is itself a convolution: of g with the kernel flipped
# and its channel axes swapped, padded by d * (k - 1) - pad. Its im2col copy of g costs less
# than col2im's strided accumulation (one pass per kernel tap) and its final transpose (16->16
# channels, 8 x 32 x 32, k3, 1 thread: input gradient 4.2 -> 3.4 ms; 32->32 k5 26.9 -> 18.2).
DIRECT_TRANSPOSE = True
# ... also with more than twice the output channels, where the direct kernels take it (they
# copy no columns of g; session 22)
WIDE_DIRECT_TRANSPOSE = True


def _direct_transpose_geom(w_shape, geom: ConvGeom, n: int | None = None, wide: bool = False):
    """The geometry of the transposed convolution as a direct one, or None where it does not
    apply (stride > 1, a padding wider than the dilated kernel, or many more output channels
    than input channels, where im2col of g would copy more than col2im adds up).

    With the batch size ``n``, also None where g has fewer columns (N * L) than output
    channels: then flipping and transposing the weight (O x C x k, a cache-hostile copy) costs
    more than col2im of the GEMM's small result (512->512 on 2 x 7 x 7, k3, 1 thread: input
    gradient 18.1 -> 11.8 ms; 256->256 on 4 x 7 x 7: 7.0 -> 6.4). ``wide``: without the
    channel ratio rule (for the direct kernels, which copy no columns of g)."""
    if not DIRECT_TRANSPOSE or any(s != 1 for s in geom.stride):
        return None
    if w_shape[0] > 2 * w_shape[1] * geom.groups and not wide:
        return None
    if n is not None and n * math.prod(geom.out_size) < w_shape[0]:
        return None
    # The high side also takes the slack: input positions that no output reads (a transposed
    # convolution's output_padding < dilation), whose gradient is zero but must still be written.
    pad = tuple(
        (d * (k - 1) - lo, d * (k - 1) - hi + (n + lo + hi - (o - 1) - d * (k - 1) - 1))
        for (lo, hi), d, k, n, o in zip(
            geom.pad, geom.dilation, geom.kernel, geom.in_size, geom.out_size
        )
    )
    if any(lo < 0 or hi < 0 for lo, hi in pad):
        return None
    return ConvGeom(
        geom.stride, pad, geom.dilation, geom.groups, geom.kernel, geom.out_size, geom.in_size
    )


def _flipped_transpose(xp, w, groups):
    """(O, C/g, *k) -> (C, O/g, *k) flipped in space: the direct kernel of the transpose."""
    o, cg, k = w.shape[0], w.shape[1], w.shape[2:]
    wt = w.reshape((groups, o // groups, cg) + k).swapaxes(1, 2)
    flip = (slice(None),) * 3 + (slice(None, None, -1),) * len(k)
    return xp.ascontiguousarray(wt[flip]).reshape((groups * cg, o // groups) + k)


# _ONE_PIXEL: a 1x1 convolution of a 1x1 input (squeeze-excite in mobilenet_v3, efficientnet,
# regnet_y) is a linear layer over the batch. The per-sample products have one column there,
# which NumPy's matmul cannot hand to BLAS (a length-1 axis with a non-unit stride): 960 ->
# 240 on 2 x 960 x 1 x 1 took 2.7 ms (torch 0.6); now three (N, C) products (issue 23).
ONE_PIXEL = True


def _pointwise(geom: ConvGeom) -> bool:
    """A 1x1 convolution at stride 1 without padding (one group): a per-sample GEMM."""
    return (
        geom.groups == 1
        and all(k == 1 for k in geom.kernel)
        and all(s == 1 for s in geom.stride)
        and not any(lo or hi for lo, hi in geom.pad)
    )


def _transposed_direct(xp, g, w_shape, geom: ConvGeom):
    """(kind, geometry) of the stride-1 input gradient as a convolution of g with the flipped
    transposed kernel: kind "cl" (the channels-last direct kernel), "conv" (``conv_forward``
    of g: the direct kernels or im2col + GEMM) or None (GEMM + col2im)."""
    wt_shape = (w_shape[1], w_shape[0]) + tuple(w_shape[2:])
    wide = WIDE_DIRECT_TRANSPOSE
    tgeom = _direct_transpose_geom(w_shape, geom, wide=wide)
    if tgeom is not None and _dcl.use_direct_cl(xp, g, wt_shape, tgeom):
        return "cl", tgeom
    tgeom = _direct_transpose_geom(w_shape, geom, g.shape[0])
    if tgeom is None and wide:  # 16->40 on 8 x 32^2, 1 thread: GEMM + col2im 2.38 -> 1.2 ms
        tgeom = _direct_transpose_geom(w_shape, geom, g.shape[0], wide=True)
        tgeom = tgeom if tgeom is not None and use_direct(xp, g, wt_shape, tgeom) else None
    return (None, None) if tgeom is None else ("conv", tgeom)


def conv_input_grad(xp, g, w, geom: ConvGeom, g_cf=None):
    """d conv(x, w) / dx applied to g (N, O, *out): the transposed convolution of g with w."""
    if is_depthwise(w.shape, geom):
        return depthwise_input_grad(xp, g, w, geom)
    split = split_input_grad(xp, g, w, geom, conv_input_grad)
    if split is not None:
        return split
    if _pointwise(geom):  # dx[n] = W^T @ g[n] (8 x 64 -> 256 x 16 x 16: 1.46 -> 1.05 ms)
        n, o = g.shape[0], g.shape[1]
        if ONE_PIXEL and math.prod(geom.in_size) == 1:  # one pixel: dx = g @ W (_ONE_PIXEL)
            gx = mm(xp.ascontiguousarray(g).reshape(n, o), w.reshape(o, -1))
            return gx.reshape((n, gx.shape[1]) + geom.in_size)
        wt = xp.ascontiguousarray(w.reshape(o, -1).T)
        gx = mm(wt, xp.ascontiguousarray(g).reshape(n, o, -1))
        return gx.reshape((n, wt.shape[0]) + geom.in_size)
    if use_direct_input_grad(xp, g, w.shape, geom):  # strided, few channels: by stride phases
        return direct_input_grad(g, w, geom)
    if _narrow.use_padded_input_grad(xp, g, w.shape, geom):  # 3 input channels: no col2im
        return _narrow.padded_input_grad(g, w, geom)
    kind, tgeom = _transposed_direct(xp, g, w.shape, geom)
    if kind == "cl":
        # the channels-last direct kernel, which lays out the flipped transpose of w itself
        # (no copy of w first); also where g has fewer columns than w has rows (256->256 on
        # 4 x 7^2, 1 thread: GEMM + col2im 3.07 ms -> 1.9)
        return _dcl.direct_cl_forward(g, w, None, tgeom, flip=True)[0]
    if kind is not None:
        return conv_forward(xp, g, _flipped_transpose(xp, w, geom.groups), None, tgeom)[0]
    if g_cf is None:
        g_cf = _channels_first(xp, g, geom.groups)
    w3 = w.reshape(geom.groups, w.shape[0] // geom.groups, -1)
    cols = _gemm(xp, w3.transpose(0, 2, 1), g_cf)
    return col2im(xp, cols, g.shape[0], w.shape[1] * geom.groups, geom)


def conv_weight_grad(xp, x, g, w_shape, geom: ConvGeom, cols=None, g_cf=None):
    """d conv(x, w) / dw applied to g; ``cols``: the columns of x when the forward kept them."""
    if is_depthwise(w_shape, geom):
        return depthwise_weight_grad(xp, x, g, w_shape, geom, cols)
    split = split_weight_grad(xp, x, g, w_shape, geom, cols, conv_weight_grad)
    if split is not None:
        return split
    if _pointwise(geom) and x.shape[0] > 0:
        # dw = sum_n g[n] @ x[n]^T: no transposed copy of x or g (the (G, R, N * L) columns
        # and g_cf cost 0.2-0.3 ms of a 1.4 ms weight gradient, 8 x 64 -> 256 x 16 x 16)
        n = x.shape[0]
        x3 = xp.ascontiguousarray(x).reshape(n, x.shape[1], -1)
        g3 = xp.ascontiguousarray(g).reshape(n, g.shape[1], -1)
        if ONE_PIXEL and x3.shape[2] == 1:  # one pixel: dw = g^T @ x over the batch (_ONE_PIXEL)
            return mm(g3[:, :, 0].T, x3[:, :, 0]).reshape(w_shape)
        gw = mm(g3[0], x3[0].T)
        for i in range(1, n):
            addmm_(gw, g3[i], x3[i].T)
        return gw.reshape(w_shape)
    if isinstance(cols, _dcl.ClCols):  # the channels-last direct forward kept its padded input
        if _dcl.use_direct_cl_weight_grad(cols):
            return _dcl.direct_cl_weight_grad(cols, g, w_shape, geom)
        cols = cols_from_padded(xp, cols.xh, geom)
    if isinstance(cols, DirectCols):  # a direct forward kept its padded input
        gw = direct_weight_grad(x, g, w_shape, geom, cols)
        if gw is not None:
            return gw
        cols = None
    if cols is None and use_direct_weight_grad(xp, x, w_shape, geom):
        gw = direct_weight_grad(x, g, w_shape, geom)
        if gw is not None:
            return gw
    if cols is None and use_blocked(xp, x, w_shape, geom):
        return blocked_weight_grad(x, g, w_shape, geom)
    if cols is None:
        cols = (
            im2col_cl(xp, x, geom)
            if use_channels_last(x.shape[1], geom.groups, geom.kernel)
            else im2col(xp, x, geom)
        )
    if g_cf is None:
        g_cf = _channels_first(xp, g, geom.groups)
    if cols.ndim == 2:  # channels-last layout (N * L, prod(k) * C)
        return weight_grad_cl(xp, cols, g_cf, w_shape)
    if cols.ndim == 4:  # per-sample layout (N, G, R, L) -> (G, R, N * L)
        cols = xp.ascontiguousarray(cols.transpose(1, 2, 0, 3)).reshape(
            cols.shape[1], cols.shape[2], -1
        )
    if cols.shape[2] >= WIDE_COLS and cols.shape[1] >= MIN_ROWS:
        # a long reduction: computing dw^T = cols @ g^T and transposing the small result beats
        # g @ cols^T (16 x 8192 @ 8192 x 144: 3.51 -> 1.44 ms; 32 x 8192 @ 8192 x 800:
        # 20.6 -> 13.7 ms, 1 thread)
        gwt = _gemm(xp, cols, g_cf.transpose(0, 2, 1))
        return xp.ascontiguousarray(gwt.transpose(0, 2, 1)).reshape(w_shape)
    return _gemm(xp, g_cf, cols.transpose(0, 2, 1)).reshape(w_shape)


def _bias_grad(xp, g):
    """g summed over all but the channel dim. Per sample a matrix-vector product with ones
    (BLAS, one pass) beats NumPy's multi-axis sum 2.5-4x (8 x 256 x 16 x 16: 0.25 -> 0.10 ms)."""
    arr = isinstance(getattr(g, "dtype", None), np.dtype)  # not a Tensor (double backward)
    if not arr or g.ndim < 3 or g.dtype.kind not in "fc" or 0 in g.shape:
        return g.sum(axis=(0,) + tuple(range(2, g.ndim)))
    g3 = xp.ascontiguousarray(g).reshape(g.shape[0], g.shape[1], -1)
    return xp.matmul(g3, xp.ones(g3.shape[2], dtype=g.dtype)).sum(axis=0)


# The autograd Functions live in conv_functions (imported last: they call the kernels above)
from .conv_functions import (  # noqa: E402, F401
    Conv,
    ConvTranspose,
    ConvWeightGrad,
    Fold,
    Unfold,
    fold_forward,
    unfold_forward,
)
