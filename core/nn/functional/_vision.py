"""``F.interpolate`` / ``F.upsample*``, ``F.pad``, ``F.unfold`` / ``F.fold``, pixel shuffles."""

from __future__ import annotations

import math

from ..._dispatch_decomp import as_one_op
from ...ops import shape as _shape
from ...ops.conv import ConvGeom, Fold, Unfold
from ...ops.resample import (
    Resample,
    cubic_map,
    linear_map,
    nearest_map,
    pad_nonconstant,
)
from ...tensor import Tensor
from ._conv import ntuple
from ._pooling import adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d

_LINEAR_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}
_MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "area", "nearest-exact")


def _spatial_arg(value, nd, name, in_size):
    if isinstance(value, (list, tuple)):
        if len(value) != nd:
            what, fmt = (
                ("output", "output size in (o1, o2, ...,oK)")
                if name == "size"
                else ("scale_factor", "scale_factor in (s1, s2, ...,sK)")
            )
            shown = (
                f"output size of {value}" if name == "size" else f"scale_factor of shape {value}"
            )
            raise ValueError(
                f"Input and {what} must have the same number of spatial dimensions, but got "
                f"input with spatial dimensions of {list(in_size)} and {shown}. Please provide "
                f"input tensor in (N, C, d1, d2, ...,dK) format and {fmt} format."
            )
        return tuple(value)
    return (value,) * nd


def interpolate(
    input: Tensor,
    size=None,
    scale_factor=None,
    mode: str = "nearest",
    align_corners: bool | None = None,
    recompute_scale_factor: bool | None = None,
    antialias: bool = False,
) -> Tensor:
    r"""Down/up samples the input to the given ``size`` or by ``scale_factor``.

    Args:
        input: tensor of shape (N, C, d1[, d2[, d3]]).
        size: output spatial size (int or tuple).
        scale_factor: multiplier for the spatial size (float or tuple).
        mode: ``'nearest'`` | ``'nearest-exact'`` | ``'linear'`` | ``'bilinear'`` |
            ``'bicubic'`` | ``'trilinear'`` | ``'area'``. Default: ``'nearest'``.
        align_corners: for the linear and cubic modes, whether the corner pixels of input and
            output are aligned (``True``) or their areas are (``False``, the default).
        recompute_scale_factor: recompute the scale from the output size instead of using
            ``scale_factor`` in the interpolation.
    """
    if mode not in _MODES:
        raise NotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.dim()}D) for "
            "the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
            f"nearest-exact (got {mode})"
        )
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError(
                "align_corners option can only be set with the interpolating "
                "modes: linear | bilinear | bicubic | trilinear"
            )
    elif align_corners is None:
        align_corners = False
    if antialias:
        raise NotImplementedError("interpolate: antialias=True is not supported by ember")
    nd = input.dim() - 2
    if nd not in (1, 2, 3):
        raise NotImplementedError(
            f"Input Error: Only 3D, 4D and 5D input Tensors supported (got {input.dim()}D) for "
            "the modes: nearest | linear | bilinear | bicubic | trilinear | area | "
            f"nearest-exact (got {mode})"
        )
    if mode in _LINEAR_DIMS and _LINEAR_DIMS[mode] != nd:
        raise NotImplementedError(
            f"Got {input.dim()}D input, but {mode} mode needs {_LINEAR_DIMS[mode] + 2}D input"
        )
    in_size = tuple(input.shape[2:])
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        out_size = tuple(int(s) for s in _spatial_arg(size, nd, "size", in_size))
        scales = (None,) * nd
    elif scale_factor is not None:
        factors = tuple(float(f) for f in _spatial_arg(scale_factor, nd, "scale_factor", in_size))
        out_size = tuple(math.floor(n * f) for n, f in zip(in_size, factors))
        scales = (None,) * nd if recompute_scale_factor else factors
    else:
        raise ValueError("either size or scale_factor should be defined")
    if any(o <= 0 for o in out_size):
        raise RuntimeError(
            f"Input and output sizes should be greater than 0, but got input "
            f"({' x '.join(map(str, in_size))}) and output "
            f"({' x '.join(map(str, out_size))})"
        )
    if mode == "area":
        pool = (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d)[nd - 1]
        return pool(input, out_size)
    if not input.dtype.is_floating_point and mode != "nearest":
        raise RuntimeError(f"\"upsample_{mode}\" not implemented for '{input.dtype.name}'")
    # torch's one op (upsample_bilinear2d(input, output_size, align_corners, scale_factors)):
    # what jit._get_trace_graph records (fvcore counts upsampling flops by these names)
    sizes_scales = (None, list(scales)) if scales[0] is not None else (list(out_size), None)
    if mode in ("nearest", "nearest-exact"):
        kind = f"upsample_nearest{nd}d" if mode == "nearest" else f"_upsample_nearest_exact{nd}d"
        args = [input, *sizes_scales]
    else:
        kind = f"upsample_{mode}{nd}d"
        args = [input, sizes_scales[0], align_corners, sizes_scales[1]]

    def run():
        return _resample(input, in_size, out_size, scales, mode, align_corners)

    return as_one_op(f"aten::{kind}", args, run)


def _resample(input, in_size, out_size, scales, mode, align_corners) -> Tensor:
    dtype = input._data.dtype
    maps = []
    for i, (n, m, s) in enumerate(zip(in_size, out_size, scales)):
        axis = 2 + i
        if mode in ("nearest", "nearest-exact"):
            if m != n:
                maps.append(nearest_map(axis, n, m, s, mode == "nearest-exact"))
        elif mode == "bicubic":
            maps.append(cubic_map(axis, n, m, s, align_corners, dtype))
        elif m != n or align_corners or s is not None:
            maps.append(linear_map(axis, n, m, s, align_corners, dtype))
    if not maps:
        return input.clone()
    return Resample.apply(input, tuple(maps))


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    """Deprecated alias of :func:`interpolate`."""
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    """Deprecated: ``interpolate(..., mode='nearest')``."""
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    """Deprecated: ``interpolate(..., mode='bilinear', align_corners=True)``."""
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)


def _pad_sizes(pad) -> tuple[int, ...]:
    """``pad`` as a tuple of ints; a float or bool size is an error, as in PyTorch."""
    for i, p in enumerate(pad):
        if isinstance(p, (bool, float)) or not (isinstance(p, Tensor) or hasattr(p, "__index__")):
            raise TypeError(
                f"pad(): argument 'pad' (position 2) must be tuple of ints, but found "
                f"element of type {type(p).__name__} at pos {i}"
            )
    return tuple(int(p) for p in pad)


def pad(input: Tensor, pad, mode: str = "constant", value: float | None = None) -> Tensor:
    r"""Pads a tensor. ``pad`` lists (left, right) sizes starting from the last dimension.

    Args:
        input: N-dimensional tensor.
        pad: m-element tuple, m/2 <= input dimensions and m even.
        mode: ``'constant'``, ``'reflect'``, ``'replicate'`` or ``'circular'``.
        value: fill value for ``'constant'`` padding. Default: ``0``.
    """
    pad = _pad_sizes(pad)
    if mode == "constant":
        return _shape.pad(input, pad, "constant", value)
    if mode not in ("reflect", "replicate", "circular"):
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    if value is not None and value != 0:
        raise ValueError(f'Padding mode "{mode}" doesn\'t take in value argument.')
    dims = len(pad) // 2
    if len(pad) % 2 or dims not in (1, 2, 3) or input.dim() not in (dims + 1, dims + 2):
        raise NotImplementedError(
            f"Padding size {len(pad)} is not supported for {input.dim()}D input tensor.\n"
            "Supported combinations for non-constant padding:\n"
            "  - 2D or 3D input: padding size = 2 (pads last dimension)\n"
            "  - 3D or 4D input: padding size = 4 (pads last 2 dimensions)\n"
            "  - 4D or 5D input: padding size = 6 (pads last 3 dimensions)"
        )
    nd = input.dim()
    width = [(0, 0)] * nd
    for i in range(dims):
        width[nd - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return pad_nonconstant(input, width, mode)


def _fold_args(fn, kernel_size, dilation, padding, stride):
    k = ntuple(kernel_size, 2, "kernel_size", fn)
    d = ntuple(dilation, 2, "dilation", fn)
    p = ntuple(padding, 2, "padding", fn)
    s = ntuple(stride, 2, "stride", fn)
    if any(v <= 0 for v in k):
        raise RuntimeError(
            f"kernel size should be greater than zero, but got kernel_height: "
            f"{k[0]} kernel_width: {k[1]}"
        )
    if any(v <= 0 for v in s):
        raise RuntimeError(
            f"stride should be greater than zero, but got stride_height: {s[0]} "
            f"stride_width: {s[1]}"
        )
    if any(v <= 0 for v in d):
        raise RuntimeError(
            f"dilation should be greater than zero, but got dilation_height: "
            f"{d[0]} dilation_width: {d[1]}"
        )
    if any(v < 0 for v in p):
        raise RuntimeError(
            f"padding should be non-negative, but got pad_height: {p[0]} pad_width: {p[1]}"
        )
    return k, d, p, s


def unfold(input: Tensor, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    r"""Extracts sliding local blocks: (N, C, H, W) -> (N, C * prod(kernel_size), L)."""
    k, d, p, s = _fold_args("unfold", kernel_size, dilation, padding, stride)
    if input.dim() not in (3, 4):
        raise NotImplementedError(
            f"Input Error: Only 3D or 4D input Tensors are supported (got {input.dim()}D)"
        )
    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    in_size = tuple(input.shape[2:])
    geom = ConvGeom(s, tuple((v, v) for v in p), d, 1, k, in_size)
    if any(o <= 0 for o in geom.out_size):
        raise RuntimeError(
            f"Given input with spatial size ({in_size[0]}, {in_size[1]}), kernel_size={k}, "
            f"dilation={d}, padding={p}, calculated shape of the array of sliding blocks as "
            f"({geom.out_size[0]}, {geom.out_size[1]}), but its components must be at least "
            "one."
        )
    out = Unfold.apply(input, geom)
    return out.squeeze(0) if unbatched else out


def fold(input: Tensor, output_size, kernel_size, dilation=1, padding=0, stride=1) -> Tensor:
    r"""Combines sliding local blocks into a tensor, summing overlaps: the adjoint of unfold."""
    out_size = ntuple(output_size, 2, "output_size", "fold")
    k, d, p, s = _fold_args("fold", kernel_size, dilation, padding, stride)
    if input.dim() not in (2, 3):
        raise NotImplementedError(
            f"Input Error: Only unbatched (2D) or batched (3D) input "
            f"Tensors are supported (got {input.dim()}D)"
        )
    unbatched = input.dim() == 2
    if unbatched:
        input = input.unsqueeze(0)
    kk = k[0] * k[1]
    if input.shape[1] % kk:
        raise RuntimeError(
            f"Expected size of input's dimension 1 to be divisible by the product "
            f"of kernel_size, but got input.size(1)={input.shape[1]} and "
            f"kernel_size={k}."
        )
    geom = ConvGeom(s, tuple((v, v) for v in p), d, 1, k, out_size)
    blocks = geom.out_size
    if any(b <= 0 for b in blocks) or input.shape[2] != blocks[0] * blocks[1]:
        raise RuntimeError(
            f"Given output_size={out_size}, kernel_size={k}, dilation={d}, padding={p}, "
            f"stride={s}, expected size of input's dimension 2 to match the calculated number "
            f"of sliding blocks {blocks[0]} * {blocks[1]} = {blocks[0] * blocks[1]}, but got "
            f"input.size(2)={input.shape[2]}."
        )
    out = Fold.apply(input, geom)
    return out.squeeze(0) if unbatched else out


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    r"""(*, C * r^2, H, W) -> (*, C, H * r, W * r)."""
    r = int(upscale_factor)
    if input.dim() < 3:
        raise RuntimeError(
            f"pixel_shuffle expects input to have at least 3 dimensions, but got "
            f"input with {input.dim()} dimension(s)"
        )
    if r <= 0:
        raise RuntimeError(f"pixel_shuffle expects a positive upscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    if c % (r * r):
        raise RuntimeError(
            f"pixel_shuffle expects its input's 'channel' dimension to be "
            f"divisible by the square of upscale_factor, but input.size(-3)={c} "
            f"is not divisible by {r * r}"
        )
    n = len(lead)
    x = input.reshape(*lead, c // (r * r), r, r, h, w)
    x = x.permute(*range(n), n, n + 3, n + 1, n + 4, n + 2)
    return x.reshape(*lead, c // (r * r), h * r, w * r)


def pixel_unshuffle(input: Tensor, downscale_factor: int) -> Tensor:
    r"""(*, C, H * r, W * r) -> (*, C * r^2, H, W), the inverse of :func:`pixel_shuffle`."""
    r = int(downscale_factor)
    if input.dim() < 3:
        raise RuntimeError(
            f"pixel_unshuffle expects input to have at least 3 dimensions, but "
            f"got input with {input.dim()} dimension(s)"
        )
    if r <= 0:
        raise RuntimeError(f"pixel_unshuffle expects a positive downscale_factor, but got {r}")
    *lead, c, h, w = input.shape
    if h % r or w % r:
        raise RuntimeError(
            f"pixel_unshuffle expects height and width to be divisible by "
            f"downscale_factor, but input.size(-2)={h} and input.size(-1)={w} "
            f"are not divisible by {r}"
        )
    n = len(lead)
    x = input.reshape(*lead, c, h // r, r, w // r, r)
    x = x.permute(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return x.reshape(*lead, c * r * r, h // r, w // r)
