"""Resampling and rearranging images: interpolate, pixel (un)shuffle; cosine similarity."""

from __future__ import annotations

import numpy as np

from . import OnnxExporterError
from ._context import Sym
from ._ops_basic import _c, rank
from ._registry import fn


@fn("interpolate", "upsample")
def interpolate(
    ctx,
    x,
    size=None,
    scale_factor=None,
    mode="nearest",
    align_corners=None,
    recompute_scale_factor=None,
    antialias=False,
):
    if antialias:
        raise OnnxExporterError("interpolate with antialias=True is not converted")
    nd = rank(x) - 2
    attrs = {}
    if mode == "nearest":
        attrs = {
            "mode": "nearest",
            "coordinate_transformation_mode": "asymmetric",
            "nearest_mode": "floor",
        }
    elif mode == "nearest-exact":
        attrs = {
            "mode": "nearest",
            "coordinate_transformation_mode": "half_pixel",
            "nearest_mode": "round_prefer_ceil",
        }
    elif mode in ("linear", "bilinear", "trilinear", "bicubic"):
        attrs = {
            "mode": "cubic" if mode == "bicubic" else "linear",
            "coordinate_transformation_mode": "align_corners"
            if align_corners
            else "pytorch_half_pixel",
        }
        if mode == "bicubic":
            attrs["cubic_coeff_a"] = -0.75
    else:
        raise OnnxExporterError(f"interpolate mode {mode!r} is not converted")
    if size is not None:
        sizes = list(size) if isinstance(size, (list, tuple)) else [size] * nd
        full = ctx.op("Concat", [ctx.shape_of(x, 0, 2), ctx.shape_tensor(sizes)], axis=0)
        return ctx.op("Resize", [x, "", "", full], **attrs)
    if scale_factor is None:
        raise OnnxExporterError("interpolate needs size or scale_factor")
    if recompute_scale_factor:
        out = [
            int(np.floor(s * f))
            for s, f in zip(
                x.shape[2:],
                scale_factor if isinstance(scale_factor, (list, tuple)) else [scale_factor] * nd,
            )
        ]
        return interpolate(ctx, x, out, None, mode, align_corners)
    sf = list(scale_factor) if isinstance(scale_factor, (list, tuple)) else [scale_factor] * nd
    scales = ctx.const(np.asarray([1.0, 1.0] + [float(s) for s in sf], np.float32))
    return ctx.op("Resize", [x, "", scales], **attrs)


@fn("pixel_shuffle")
def pixel_shuffle(ctx, x, upscale_factor):
    if rank(x) != 4:
        raise OnnxExporterError("pixel_shuffle is converted for 4-D inputs only")
    return ctx.op("DepthToSpace", [x], blocksize=int(upscale_factor), mode="CRD")


@fn("pixel_unshuffle")
def pixel_unshuffle(ctx, x, downscale_factor):
    r_ = int(downscale_factor)
    if rank(x) != 4:
        raise OnnxExporterError("pixel_unshuffle is converted for 4-D inputs only")
    _, c, h, w = x.shape
    y = ctx.op("Reshape", [x, ctx.ints([0, c, h // r_, r_, w // r_, r_])])
    y = ctx.op("Transpose", [y], perm=[0, 1, 3, 5, 2, 4])
    return ctx.op("Reshape", [y, ctx.ints([0, c * r_ * r_, h // r_, w // r_])])


@fn("cosine_similarity")
def cosine_similarity(ctx, x1, x2, dim=1, eps=1e-8):
    like = x1 if isinstance(x1, Sym) else x2
    dot = ctx.reduce("ReduceSum", ctx.op("Mul", [x1, x2]), [dim], False)
    n1 = ctx.reduce("ReduceSum", ctx.op("Mul", [x1, x1]), [dim], False)
    n2 = ctx.reduce("ReduceSum", ctx.op("Mul", [x2, x2]), [dim], False)
    den = ctx.op("Sqrt", [ctx.op("Max", [ctx.op("Mul", [n1, n2]), _c(ctx, eps * eps, like)])])
    return ctx.op("Div", [dot, den])
