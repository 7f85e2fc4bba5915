"""Neural-network functions: linear, convolution, pooling, normalization, embedding,
dropout, padding.

Linear, convolution, padding and pooling are here; normalization, embedding and dropout are in
``_ops_norm.py``, imported (and re-exported) at the end of this file.
"""

from __future__ import annotations

import numpy as np

from . import OnnxExporterError
from ._context import Sym, _np_of
from ._ops_basic import _c, rank
from ._registry import fn


def _const_np(v):
    return None if isinstance(v, Sym) or v is None else _np_of(v)


def _tup(v, n: int) -> list[int]:
    if isinstance(v, (list, tuple)):
        if len(v) == 1:
            return [int(v[0])] * n
        return [int(e) for e in v]
    return [int(v)] * n


# ---- linear ------------------------------------------------------------------------------
@fn("linear")
def linear(ctx, x, weight, bias=None):
    w = _const_np(weight)
    if rank(x) == 2 and w is not None and w.ndim == 2:
        return ctx.op("Gemm", [x, weight, bias if bias is not None else ""], transB=1)
    wt = ctx.const(w.T) if w is not None else ctx.op("Transpose", [weight], perm=[1, 0])
    out = ctx.op("MatMul", [x, wt])
    return ctx.op("Add", [out, bias]) if bias is not None else out


@fn("bilinear")
def bilinear(ctx, x1, x2, weight, bias=None):
    if ctx.opset >= 12:
        out = ctx.op("Einsum", [x1, weight, x2], equation="...i,oij,...j->...o")
    else:  # no Einsum before 12: [..., 1, 1, I] @ [O, I, J] -> [..., O, J], times x2, summed
        xw = ctx.squeeze(ctx.op("MatMul", [ctx.unsqueeze(x1, [-2, -3]), weight]), [-2])
        prod = ctx.op("Mul", [xw, ctx.unsqueeze(x2, [-2])])
        out = ctx.reduce("ReduceSum", prod, [-1], False)
    return ctx.op("Add", [out, bias]) if bias is not None else out


# ---- convolution -------------------------------------------------------------------------
def _batched(ctx, x, nd):
    if rank(x) == nd + 1:
        return ctx.unsqueeze(x, [0]), True
    return x.name, False


def _unbatch(ctx, y, was):
    return ctx.squeeze(y, [0]) if was else y


def conv(ctx, x, weight, bias, stride, padding, dilation, groups, nd):
    xin, unb = _batched(ctx, x, nd)
    k = list(_np_of(weight).shape[2:]) if not isinstance(weight, Sym) else list(weight.shape[2:])
    strides, dil = _tup(stride, nd), _tup(dilation, nd)
    if isinstance(padding, str):
        if padding == "valid":
            pads = [0] * (2 * nd)
        elif padding == "same":
            tot = [d * (kk - 1) for d, kk in zip(dil, k)]
            pads = [t // 2 for t in tot] + [t - t // 2 for t in tot]
        else:
            raise OnnxExporterError(f"conv padding={padding!r} is not converted")
    else:
        p = _tup(padding, nd)
        pads = p + p
    y = ctx.op(
        "Conv",
        [xin, weight, bias if bias is not None else ""],
        strides=strides,
        pads=pads,
        dilations=dil,
        group=int(groups),
        kernel_shape=k,
    )
    return _unbatch(ctx, y, unb)


for _nd in (1, 2, 3):

    def _mk(nd):
        def h(ctx, x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
            return conv(ctx, x, weight, bias, stride, padding, dilation, groups, nd)

        return h

    fn(f"conv{_nd}d")(_mk(_nd))


def conv_transpose(ctx, x, weight, bias, stride, padding, output_padding, groups, dilation, nd):
    xin, unb = _batched(ctx, x, nd)
    k = list(_np_of(weight).shape[2:]) if not isinstance(weight, Sym) else list(weight.shape[2:])
    p = _tup(padding, nd)
    y = ctx.op(
        "ConvTranspose",
        [xin, weight, bias if bias is not None else ""],
        strides=_tup(stride, nd),
        pads=p + p,
        dilations=_tup(dilation, nd),
        group=int(groups),
        output_padding=_tup(output_padding, nd),
        kernel_shape=k,
    )
    return _unbatch(ctx, y, unb)


for _nd in (1, 2, 3):

    def _mkt(nd):
        def h(
            ctx, x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
        ):
            return conv_transpose(
                ctx, x, weight, bias, stride, padding, output_padding, groups, dilation, nd
            )

        return h

    fn(f"conv_transpose{_nd}d")(_mkt(_nd))


# ---- padding -----------------------------------------------------------------------------
@fn("pad")
def pad(ctx, x, pad, mode="constant", value=None):
    r = rank(x)
    pad = [int(p) for p in pad]
    n = len(pad) // 2
    begins, ends = [0] * r, [0] * r
    for i in range(n):  # torch lists (last-dim left, last-dim right, ...)
        begins[r - 1 - i] = pad[2 * i]
        ends[r - 1 - i] = pad[2 * i + 1]
    if mode == "circular":
        out = x.name
        for i in range(n):
            ax = r - 1 - i
            lo, hi = begins[ax], ends[ax]
            parts = []
            if lo:
                parts.append(
                    ctx.op("Slice", [out, ctx.ints([-lo]), ctx.ints([2**62]), ctx.ints([ax])])
                )
            parts.append(out)
            if hi:
                parts.append(ctx.op("Slice", [out, ctx.ints([0]), ctx.ints([hi]), ctx.ints([ax])]))
            out = ctx.op("Concat", parts, axis=ax) if len(parts) > 1 else out
        return out
    onnx_mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}.get(mode)
    if onnx_mode is None:
        raise OnnxExporterError(f"pad mode {mode!r} is not converted")
    if any(p < 0 for p in pad):
        raise OnnxExporterError("negative padding is not converted")
    inputs = [x, ctx.ints(begins + ends)]
    if onnx_mode == "constant":
        inputs.append(_c(ctx, 0 if value is None else value, x))
    return ctx.op("Pad", inputs, mode=onnx_mode)


# ---- pooling -----------------------------------------------------------------------------
def max_pool(ctx, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd):
    if return_indices:
        raise OnnxExporterError("max_pool with return_indices=True is not converted")
    xin, unb = _batched(ctx, x, nd)
    k = _tup(kernel_size, nd)
    s = _tup(stride if stride not in (None, []) else kernel_size, nd)
    p = _tup(padding, nd)
    y = ctx.op(
        "MaxPool",
        [xin],
        kernel_shape=k,
        strides=s,
        pads=p + p,
        dilations=_tup(dilation, nd),
        ceil_mode=int(bool(ceil_mode)),
    )
    return _unbatch(ctx, y, unb)


def avg_pool(
    ctx, x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, nd
):
    if divisor_override:
        raise OnnxExporterError("avg_pool with divisor_override is not converted")
    xin, unb = _batched(ctx, x, nd)
    k = _tup(kernel_size, nd)
    s = _tup(stride if stride not in (None, []) else kernel_size, nd)
    p = _tup(padding, nd)
    y = ctx.op(
        "AveragePool",
        [xin],
        kernel_shape=k,
        strides=s,
        pads=p + p,
        ceil_mode=int(bool(ceil_mode)),
        count_include_pad=int(bool(count_include_pad)),
    )
    return _unbatch(ctx, y, unb)


def lp_pool(ctx, x, norm_type, kernel_size, stride, ceil_mode, nd):
    xin, unb = _batched(ctx, x, nd)
    k = _tup(kernel_size, nd)
    s = _tup(stride if stride is not None else kernel_size, nd)
    # torch: (sum over the window of x**p) ** (1/p), without abs (as ONNX's LpPool has abs)
    p = float(norm_type)
    xp = ctx.op("Pow", [xin, _c(ctx, p, x)])
    avg = ctx.op("AveragePool", [xp], kernel_shape=k, strides=s, ceil_mode=int(bool(ceil_mode)))
    tot = ctx.op("Mul", [avg, _c(ctx, float(np.prod(k)), x)])
    y = ctx.op("Pow", [tot, _c(ctx, 1.0 / p, x)])
    return _unbatch(ctx, y, unb)


def adaptive_pool(ctx, x, output_size, nd, kind):
    xin, unb = _batched(ctx, x, nd)
    shape = list(x.shape[-nd:])
    out = [shape[i] if o is None else int(o) for i, o in enumerate(_tup_opt(output_size, nd))]
    glob = "GlobalAveragePool" if kind == "avg" else "GlobalMaxPool"
    pool = "AveragePool" if kind == "avg" else "MaxPool"
    if all(o == 1 for o in out):
        return _unbatch(ctx, ctx.op(glob, [xin]), unb)
    if isinstance(x.dyn, frozenset) and any(d % x.rank >= x.rank - nd for d in x.dyn):
        raise OnnxExporterError(
            "adaptive pooling to a size other than 1 over a dynamic spatial size is not converted"
        )
    if all(s % o == 0 for s, o in zip(shape, out)):
        k = [s // o for s, o in zip(shape, out)]
        return _unbatch(ctx, ctx.op(pool, [xin], kernel_shape=k, strides=k), unb)
    # general case: one window per output position, per axis (windows overlap as torch's)
    y = xin
    for i in range(nd):
        ax = 2 + i
        pieces = []
        for j in range(out[i]):
            lo = (j * shape[i]) // out[i]
            hi = -((-(j + 1) * shape[i]) // out[i])
            sl = ctx.op("Slice", [y, ctx.ints([lo]), ctx.ints([hi]), ctx.ints([ax])])
            red = "ReduceMean" if kind == "avg" else "ReduceMax"
            pieces.append(ctx.reduce(red, sl, [ax], True))
        y = ctx.op("Concat", pieces, axis=ax)
    return _unbatch(ctx, y, unb)


def _tup_opt(v, n):
    if isinstance(v, (list, tuple)):
        return list(v) if len(v) == n else [v[0]] * n
    return [v] * n


for _nd in (1, 2, 3):

    def _mkp(nd):
        def mp(
            ctx,
            x,
            kernel_size,
            stride=None,
            padding=0,
            dilation=1,
            ceil_mode=False,
            return_indices=False,
        ):
            return max_pool(
                ctx, x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, nd
            )

        def ap(
            ctx,
            x,
            kernel_size,
            stride=None,
            padding=0,
            ceil_mode=False,
            count_include_pad=True,
            divisor_override=None,
        ):
            return avg_pool(
                ctx,
                x,
                kernel_size,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
                divisor_override,
                nd,
            )

        def lp(ctx, x, norm_type, kernel_size, stride=None, ceil_mode=False):
            return lp_pool(ctx, x, norm_type, kernel_size, stride, ceil_mode, nd)

        def aap(ctx, x, output_size):
            return adaptive_pool(ctx, x, output_size, nd, "avg")

        def amp(ctx, x, output_size, return_indices=False):
            if return_indices:
                raise OnnxExporterError(
                    "adaptive_max_pool with return_indices=True is not converted"
                )
            return adaptive_pool(ctx, x, output_size, nd, "max")

        return mp, ap, lp, aap, amp

    _h = _mkp(_nd)
    fn(f"max_pool{_nd}d")(_h[0])
    fn(f"avg_pool{_nd}d")(_h[1])
    fn(f"lp_pool{_nd}d")(_h[2])
    fn(f"adaptive_avg_pool{_nd}d")(_h[3])
    fn(f"adaptive_max_pool{_nd}d")(_h[4])


# Normalization, embedding and dropout (core/onnx/_ops_norm.py): imported here, after the
# helpers it uses exist, so importing this module registers them too; re-exported by name.
from ._ops_norm import (  # noqa: E402,F401
    _chan,
    _dropout,
    batch_norm,
    embedding,
    embedding_bag,
    group_norm,
    instance_norm,
    layer_norm,
    local_response_norm,
    normalize,
    rms_norm,
)
