"""Graph rewrite: ``relu(max_pool2d(conv2d(x, w, b), 2))`` as one Function.

Why: eager ember runs the three ops in NCHW, and pays layout copies around them. A
channels-last convolution (``ops.conv_cl``: 32-128 input channels) computes its output as
(N * H * W, O) rows and transposes it to NCHW (a full-size copy); its backward transposes the
gradient back to (O, N * L) for the weight gradient (``_channels_first``, another full-size
copy) and to NHWC again inside the input gradient's columns (a third). Fused, the 2x2 pool runs
on the NHWC rows as they come out of the GEMM, only the pooled quarter is transposed to NCHW,
and the backward scatters the gradient straight into the (N * L, O) rows both GEMMs read. For
a convolution on the per-sample column layout (a first layer: few input channels), the scatter
writes the gradient straight in the (O, N * L) order the weight gradient reads, which saves
that layer's ``_channels_first`` copy. The ReLU, applied to the pooled values, costs a pass
over the quarter-size output.

Values equal eager's bit for bit in the forward. In the backward, the weight and bias gradients
are the same sums read from differently laid out operands (a GEMM over (N * L, O) rows instead
of a transposed view, a sum over the rows instead of over (N, H, W)), so they are equal to
rounding, not bitwise; the input gradient is bitwise eager's.

The rewrite applies to ``F.conv2d`` (groups 1, dilation 1, stride 1) whose only user is a
``F.max_pool2d`` with kernel 2, stride 2 (or None), no padding, dilation 1, no ``ceil_mode``
and no indices, whose only user is a plain ReLU (``_reorder`` moves ReLUs after pools first).
Anything not covered at run time (an unbatched or odd-sized input, dtypes other than float32
and float64, autocast) runs the three original calls.
"""

from __future__ import annotations

import inspect
from typing import Any

from ember.fx.graph import Graph
from ember.fx.node import Node

from ..autograd.function import Function
from ..backend.mkl_gemm import addmm_
from ..backend.mkl_gemm import matmul as mm
from ..ops.conv import ConvGeom, _direct_transpose_geom, _flipped_transpose, conv_input_grad
from ..ops.conv_cl import im2col_cl, use_channels_last, weight_cl

__all__ = ["ConvPool2x2", "conv2d_pool_relu", "fuse_conv_pool_relu"]

_TAPS = ((0, 0), (0, 1), (1, 0), (1, 1))  # offset k = 2 * row + column, as ops.pooling's


def _pool_nhwc(xp, y):
    """2x2 max pool of (N, H, W, C) rows: (values (N, H/2, W/2, C), offset of each maximum).

    The same pairwise tree as ``ops.pooling._max_pool_2x2`` (columns, then rows; strict ``>``
    keeps the first maximum in (row, column) order), on the channels-last layout."""
    n, h, w, c = y.shape
    v = y.reshape(n, h // 2, 2, w // 2, 2, c)
    left, right = v[:, :, :, :, 0], v[:, :, :, :, 1]  # (N, H/2, 2, W/2, C)
    col = (right > left).view(xp.uint8)
    pairs = xp.maximum(left, right)
    top, bottom = pairs[:, :, 0], pairs[:, :, 1]
    row = (bottom > top).view(xp.uint8)
    col_top, col_bottom = col[:, :, 0], col[:, :, 1]
    which = col_top + row * (2 + col_bottom - col_top)
    return xp.maximum(top, bottom), which


def _fix_nan(xp, best, which, tap):
    """PyTorch reports the last NaN of a window as its maximum (see ops.pooling)."""
    if best.dtype.kind == "f" and bool(xp.isnan(best).any()):
        for k in range(4):
            which = xp.where(xp.isnan(tap(k)), which.dtype.type(k), which)
    return which


class ConvPool2x2(Function):
    """``relu?(max_pool2d(conv2d(x, w, b), 2))`` for stride-1, groups-1, 2-D convolutions."""

    supports_double_backward = False

    @staticmethod
    def forward(ctx, x, w, b, geom, relu):
        xp = ctx.xp
        ctx.geom, ctx.relu = geom, relu
        n, o = x.shape[0], w.shape[0]
        h, wd = geom.out_size
        cols = im2col_cl(xp, x, geom)  # (N * L, prod(k) * C)
        y = _chunked_nn(xp, cols, weight_cl(xp, w).T)  # (N * L, O): NHWC rows
        if b is not None:
            y += b
        y = y.reshape(n, h, wd, o)
        best, which = _pool_nhwc(xp, y)
        which = _fix_nan(xp, best, which, lambda k: y[:, _TAPS[k][0] :: 2, _TAPS[k][1] :: 2])
        if relu:
            xp.maximum(best, 0, out=best)
        out = xp.ascontiguousarray(best.transpose(0, 3, 1, 2))
        ctx.which = which
        ctx.cols = cols if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(x, w, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        xp, geom = ctx.xp, ctx.geom
        x, w, out = ctx.saved_tensors
        need = ctx.needs_input_grad
        which, cols = ctx.which, ctx.cols
        ctx.which = ctx.cols = None
        n, o = grad.shape[0], grad.shape[1]
        h, wd = geom.out_size
        # the pooled gradient (ReLU mask applied) as NHWC, then routed to the maxima of
        # (N * L, O) rows: the layout both GEMMs below read without a copy
        gm = xp.empty((n, h // 2, wd // 2, o), dtype=grad.dtype)
        g_t = grad.transpose(0, 2, 3, 1)
        if ctx.relu:
            # (not out <= 0: a NaN output passes its gradient, as eager's and torch's ReLU)
            xp.multiply(g_t, ~(out.transpose(0, 2, 3, 1) <= 0), out=gm)
        else:
            gm[...] = g_t
        gy = xp.empty((n, h // 2, 2, wd // 2, 2, o), dtype=grad.dtype)
        for k, (i, j) in enumerate(_TAPS):
            xp.multiply(gm, which == k, out=gy[:, :, i, :, j])
        rows = gy.reshape(n * h * wd, o)
        gx = _input_grad_nhwc(xp, rows, w, x.shape, geom) if need[0] else None
        gw = None
        if need[1]:
            kh, kw = geom.kernel
            gwt = _chunked_tn(xp, cols, rows).reshape(kh, kw, w.shape[1], o)
            gw = xp.ascontiguousarray(gwt.transpose(3, 2, 0, 1))
        gb = rows.sum(0) if need[2] else None
        return gx, gw, gb, None, None


# Rows of the two operands per block of the weight gradient's reduction: about 640 KiB of
# both together, so a block stays in L2 while BLAS sweeps it (see _chunked_tn)
_BLOCK_BYTES = 640 * 1024


def _chunked_tn(xp, a, b):
    """``a.T @ b`` for tall (K, M) and (K, N) operands, summed over blocks of K rows.

    One (288, 12544) @ (12544, 64) GEMM (the cnn's second convolution's weight gradient) runs
    at half the speed of the same product in 384-row blocks with OpenBLAS at 1 thread (53 ->
    27 ms, process time): the long reduction streams both operands through the cache once per
    panel. Blocks change the order of the sum (equal to rounding, not bitwise)."""
    k = a.shape[0]
    rows = max(64, _BLOCK_BYTES // (a.itemsize * (a.shape[1] + b.shape[1])) // 32 * 32)
    if xp.__name__ != "numpy" or k <= 2 * rows:
        return mm(a.T, b)
    out = mm(a[:rows].T, b[:rows])
    for s in range(rows, k, rows):
        addmm_(out, a[s : s + rows].T, b[s : s + rows])
    return out


_ROW_BLOCK_BYTES = 2 * 2**20


def _chunked_nn(xp, a, b):
    """``a @ b`` for a tall (M, K) ``a``, in blocks of rows written into one output.

    OpenBLAS at 1 thread (process time) ran the cnn's (12544, 288) @ (288, 64) forward in 26
    ms as one call and 17 ms in blocks of ~2 MiB of ``a``; the (12544, 576) @ (576, 32) input
    gradient 22.5 -> 19 ms. The row blocks leave each dot product whole (tests/test_compile_conv.py
    checks the forward and input gradient against eager bit for bit)."""
    m = a.shape[0]
    rows = max(64, _ROW_BLOCK_BYTES // (a.itemsize * a.shape[1]) // 32 * 32)
    if xp.__name__ != "numpy" or m <= 2 * rows:
        return mm(a, b)
    out = xp.empty((m, b.shape[1]), dtype=xp.result_type(a, b))
    for s in range(0, m, rows):
        mm(a[s : s + rows], b, out=out[s : s + rows])
    return out


def _input_grad_nhwc(xp, rows, w, x_shape, geom: ConvGeom):
    """dx from the output gradient as (N * L, O) rows: the direct transposed convolution (the
    flipped kernel over the padded gradient) read channels-last, as ``conv_cl`` would after
    transposing g to NHWC itself."""
    n, c = x_shape[0], x_shape[1]
    h, wd = geom.out_size
    o = w.shape[0]
    tgeom = _direct_transpose_geom(w.shape, geom)
    if tgeom is None or not use_channels_last(o, 1, geom.kernel):
        g = rows.reshape(n, h, wd, o).transpose(0, 3, 1, 2)
        return conv_input_grad(xp, g, w, geom)
    (plo, phi), (qlo, qhi) = tgeom.pad
    gpad = xp.zeros((n, h + plo + phi, wd + qlo + qhi, o), dtype=rows.dtype)
    gpad[:, plo : plo + h, qlo : qlo + wd] = rows.reshape(n, h, wd, o)
    kh, kw = geom.kernel
    oh, ow = tgeom.out_size
    st = gpad.strides
    v = xp.lib.stride_tricks.as_strided(
        gpad, shape=(n, oh, ow, kh, kw, o), strides=(st[0], st[1], st[2], st[1], st[2], st[3])
    )
    gcols = xp.ascontiguousarray(v).reshape(n * oh * ow, -1)
    dx = _chunked_nn(xp, gcols, weight_cl(xp, _flipped_transpose(xp, w, 1)).T)  # (N * L', C)
    return xp.ascontiguousarray(dx.reshape(n, oh, ow, c).transpose(0, 3, 1, 2))


def _eager(x, w, b, stride, padding, dilation, groups, relu):
    from ember.nn import functional as F

    y = F.max_pool2d(F.conv2d(x, w, b, stride, padding, dilation, groups), 2, 2)
    return F.relu(y) if relu else y


def _autocasting() -> bool:
    from ember.amp.autocast_mode import is_autocast_enabled

    return any(is_autocast_enabled(d) for d in ("cpu", "cuda"))


def _dtypes() -> tuple:
    import ember

    # not float16/bfloat16: eager pools the *rounded* convolution output, where ties (and so
    # the argmax that gets the gradient) differ from a pool over float32 values
    return (ember.float32, ember.float64)


def _pair(v: Any) -> tuple | None:
    if type(v) is int:
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(type(e) is int for e in v):
        return tuple(v)
    return None


def conv2d_pool_relu(
    x: Any,
    w: Any,
    b: Any,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    relu: bool = True,
) -> Any:
    """``relu(max_pool2d(conv2d(x, w, b, ...), 2, 2))`` (``relu=False``: without the ReLU),
    fused where the run-time arguments allow, else the three calls."""
    from ember import Tensor
    from ember.nn.functional._conv import _conv_padding

    dtypes = _dtypes()

    if not (
        isinstance(x, Tensor)
        and isinstance(w, Tensor)
        and x.dim() == 4
        and w.dim() == 4
        and (b is None or isinstance(b, Tensor))
        and groups == 1
        and x.dtype in dtypes
        and x.dtype == w.dtype
        and (b is None or b.dtype == w.dtype)
        and x.shape[1] == w.shape[1]
        and x.device == w.device
        and not _autocasting()
        and use_channels_last(x.shape[1], 1, w.shape[2:])
    ):
        return _eager(x, w, b, stride, padding, dilation, groups, relu)
    kernel = tuple(w.shape[2:])
    padding2 = padding if isinstance(padding, str) else _pair(padding)
    if (
        _pair(stride) != (1, 1)
        or _pair(dilation) != (1, 1)
        or padding2 is None
        or (padding2 not in ("same", "valid") and isinstance(padding2, str))
        or (not isinstance(padding2, str) and any(p < 0 for p in padding2))
    ):
        return _eager(x, w, b, stride, padding, dilation, groups, relu)
    pad = (
        _conv_padding(padding2, 2, kernel, (1, 1), (1, 1))
        if isinstance(padding2, str)
        else tuple((p, p) for p in padding2)
    )
    geom = ConvGeom((1, 1), pad, (1, 1), 1, kernel, tuple(x.shape[2:]))
    if any(s < 2 or s % 2 for s in geom.out_size):
        return _eager(x, w, b, stride, padding, dilation, groups, relu)
    return ConvPool2x2.apply(x, w, b, geom, relu)


# ---- the graph rewrite ----------------------------------------------------------------------
def _bound(fn, n: Node) -> dict | None:
    try:
        bound = inspect.signature(fn).bind(*n.args, **n.kwargs)
    except TypeError:
        return None
    bound.apply_defaults()
    return dict(bound.arguments)


def _plain_2x2_pool(n: Node) -> bool:
    from ember.nn import functional as F

    args = _bound(F.max_pool2d, n)
    if args is None:
        return False
    norm = {
        k: (v, v) if type(v) is int else tuple(v) if isinstance(v, (tuple, list)) else v
        for k, v in args.items()
        if k != "input"
    }
    return (
        norm["kernel_size"] == (2, 2)
        and norm["stride"] in (None, (), (2, 2))
        and norm["padding"] == (0, 0)
        and norm["dilation"] == (1, 1)
        and norm["ceil_mode"] is False
        and norm["return_indices"] is False
    )


def _channels_last_weight(w: Any, root: Any) -> bool:
    """False where the weight is a bound parameter whose shape the fused path does not take
    (it would fall back at run time anyway); True where unknown until run time."""
    if not isinstance(w, Node) or w.op != "get_attr" or root is None:
        return True
    obj = root
    try:
        for part in w.target.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        return True
    shape = getattr(obj, "shape", None)
    return shape is None or (len(shape) == 4 and use_channels_last(shape[1], 1, shape[2:]))


def _single_user(n: Node) -> Node | None:
    return next(iter(n.users)) if len(n.users) == 1 else None


def fuse_conv_pool_relu(graph: Graph, root: Any = None) -> int:
    """Rewrite every ``relu(max_pool2d(conv2d(...), 2))`` of ``graph`` (and, without a ReLU
    after it, ``max_pool2d(conv2d(...), 2)``) to one :func:`conv2d_pool_relu` call; returns
    how many were rewritten."""
    from ember.nn import functional as F

    from ._reorder import _is_plain_relu, _tables

    relus, _ = _tables()
    outputs = {a for n in graph.nodes if n.op == "output" for a in n.all_input_nodes}
    count = 0
    for conv in list(graph.nodes):
        if conv.op != "call_function" or conv.target is not F.conv2d or conv in outputs:
            continue
        pool = _single_user(conv)
        if (
            pool is None
            or pool.op != "call_function"
            or pool.target is not F.max_pool2d
            or pool.args[:1] != (conv,)
            or not _plain_2x2_pool(pool)
        ):
            continue
        args = _bound(F.conv2d, conv)
        if (
            args is None
            or type(args["groups"]) is not int
            or not _channels_last_weight(args["weight"], root)
        ):
            continue
        relu = _single_user(pool)
        fuse_relu = (
            relu is not None
            and pool not in outputs
            and _is_plain_relu(relu, relus)
            and relu.args[0] is pool
        )
        last = relu if fuse_relu else pool
        with graph.inserting_before(last):
            fused = graph.call_function(
                conv2d_pool_relu,
                (
                    args["input"],
                    args["weight"],
                    args["bias"],
                    args["stride"],
                    args["padding"],
                    args["dilation"],
                    args["groups"],
                    fuse_relu,
                ),
            )
        last.replace_all_uses_with(fused)
        if fuse_relu:
            graph.erase_node(relu)
        graph.erase_node(pool)
        graph.erase_node(conv)
        count += 1
    return count
