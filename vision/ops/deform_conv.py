"""Deformable convolution (Dai et al. 2017; with ``mask``, v2 of Zhu et al. 2019):
``deform_conv2d`` and the ``DeformConv2d`` layer, torchvision's API.

Each kernel tap ``k`` of each output position samples the input at its regular place plus a
learned offset, bilinearly (corners outside the image count as 0, and a sample beyond one
pixel outside is 0, as torchvision's kernel), optionally scaled by a mask; the sampled columns
then meet the weight in one grouped matrix product, as an im2col convolution does. The sampling
is written with ember ops (floor and the corner indices on detached positions, the bilinear
weights and the gathers differentiable), so autograd gives the gradients of the input, the
offsets, the mask, the weight and the bias, on whichever device the input lives.
"""

from __future__ import annotations

import math

import ember
from ember import Tensor, nn
from ember.nn import init

__all__ = ["DeformConv2d", "deform_conv2d"]


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    v = tuple(int(x) for x in v)
    if len(v) != 2:
        raise ValueError(f"deform_conv2d: {name} must be an int or a pair of ints, got {v}")
    return v


def _sample(x: Tensor, py: Tensor, px: Tensor) -> Tensor:
    """Bilinear samples of ``x`` ``(N, G, Cg, H, W)`` at ``py``/``px`` ``(N, G, L)``: returns
    ``(N, G, Cg, L)``; zero outside as torchvision's ``bilinear_interpolate``."""
    n, g, cg, h, w = x.shape
    inside = ((py > -1) & (py < h) & (px > -1) & (px < w)).to(x.dtype)
    y0, x0 = ember.floor(py.detach()), ember.floor(px.detach())
    ly, lx = py - y0, px - x0
    flat = x.reshape(n, g, cg, h * w)
    out = None
    for dy, wy in ((0, 1 - ly), (1, ly)):
        yy = y0 + dy
        ok_y = (yy >= 0) & (yy <= h - 1)
        for dx, wx in ((0, 1 - lx), (1, lx)):
            xx = x0 + dx
            ok = (ok_y & (xx >= 0) & (xx <= w - 1)).to(x.dtype) * inside
            idx = (yy.clamp(0, h - 1) * w + xx.clamp(0, w - 1)).long()
            vals = ember.gather(flat, 3, idx.unsqueeze(2).expand(n, g, cg, idx.shape[-1]))
            term = vals * (wy * wx * ok).unsqueeze(2)
            out = term if out is None else out + term
    return out


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = (1, 1),
    padding: int | tuple[int, int] = (0, 0),
    dilation: int | tuple[int, int] = (1, 1),
    mask: Tensor | None = None,
) -> Tensor:
    """Deformable 2-D convolution.

    Args:
        input: ``(N, C_in, H, W)``.
        offset: ``(N, 2 * offset_groups * KH * KW, H_out, W_out)``: for offset group ``g`` and
            tap ``k = i * KW + j``, channel ``2 * (g * KH * KW + k)`` is the row offset and the
            next one the column offset.
        weight: ``(C_out, C_in / groups, KH, KW)``.
        bias: ``(C_out,)`` or ``None``.
        stride, padding, dilation: as in ``conv2d``.
        mask: ``(N, offset_groups * KH * KW, H_out, W_out)`` modulation (v2) or ``None``.

    Returns:
        ``(N, C_out, H_out, W_out)``.
    """
    sh, sw = _pair(stride, "stride")
    ph, pw = _pair(padding, "padding")
    dh, dw = _pair(dilation, "dilation")
    if input.dim() != 4 or weight.dim() != 4:
        raise ValueError(
            f"deform_conv2d expects a 4-D input and weight, got {tuple(input.shape)} and "
            f"{tuple(weight.shape)}"
        )
    n, c, h, w = input.shape
    c_out, c_in_g, kh, kw = weight.shape
    taps = kh * kw
    if c % c_in_g:
        raise ValueError(
            f"deform_conv2d: input channels ({c}) must be a multiple of the weight's input "
            f"channels per group ({c_in_g})"
        )
    groups = c // c_in_g
    if c_out % groups:
        raise ValueError(
            f"deform_conv2d: weight output channels ({c_out}) must be divisible by the groups "
            f"({groups})"
        )
    h_out = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    w_out = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    og, rem = divmod(offset.shape[1], 2 * taps)
    if offset.dim() != 4 or rem or og == 0 or c % og:
        raise ValueError(
            f"deform_conv2d: offset must be (N, 2 * offset_groups * {kh} * {kw}, H_out, W_out) "
            f"with offset_groups dividing the {c} input channels, got {tuple(offset.shape)}"
        )
    expect = (n, 2 * og * taps, h_out, w_out)
    if tuple(offset.shape) != expect:
        raise ValueError(
            f"deform_conv2d: offset must have shape {expect}, got {tuple(offset.shape)}"
        )
    if mask is not None and tuple(mask.shape) != (n, og * taps, h_out, w_out):
        raise ValueError(
            f"deform_conv2d: mask must have shape {(n, og * taps, h_out, w_out)}, got "
            f"{tuple(mask.shape)}"
        )
    length = taps * h_out * w_out
    dev, dt = input.device, input.dtype
    # the regular sampling grid of each tap: (taps, H_out, W_out)
    ty = ember.arange(kh, device=dev, dtype=dt).repeat_interleave(kw) * dh
    tx = ember.arange(kw, device=dev, dtype=dt).repeat(kh) * dw
    oy = ember.arange(h_out, device=dev, dtype=dt) * sh - ph
    ox = ember.arange(w_out, device=dev, dtype=dt) * sw - pw
    base_y = ty[:, None, None] + oy[None, :, None]
    base_x = tx[:, None, None] + ox[None, None, :]
    off = offset.reshape(n, og, taps, 2, h_out, w_out)
    py = (base_y + off[:, :, :, 0]).reshape(n, og, length)
    px = (base_x + off[:, :, :, 1]).reshape(n, og, length)
    cols = _sample(input.reshape(n, og, c // og, h, w), py, px)  # (N, og, C/og, taps * L)
    if mask is not None:
        cols = cols * mask.reshape(n, og, 1, length)
    cols = cols.reshape(n, groups, c_in_g * taps, h_out * w_out)
    out = weight.reshape(groups, c_out // groups, c_in_g * taps) @ cols
    out = out.reshape(n, c_out, h_out, w_out)
    if bias is not None:
        out = out + bias.reshape(1, c_out, 1, 1)
    return out


class DeformConv2d(nn.Module):
    """``deform_conv2d`` as a layer: ``forward(input, offset, mask=None)``; the offsets (and
    mask) come from the caller, usually a plain ``nn.Conv2d`` on the same input."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if in_channels % groups:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups:
            raise ValueError("out_channels must be divisible by groups")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        self.groups = groups
        self.weight = nn.Parameter(
            ember.empty(out_channels, in_channels // groups, *self.kernel_size)
        )
        self.bias = nn.Parameter(ember.empty(out_channels)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor, offset: Tensor, mask: Tensor | None = None) -> Tensor:
        return deform_conv2d(
            input,
            offset,
            self.weight,
            self.bias,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            mask=mask,
        )

    def __repr__(self) -> str:
        s = (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}"
        )
        s += f", padding={self.padding}" if self.padding != (0, 0) else ""
        s += f", dilation={self.dilation}" if self.dilation != (1, 1) else ""
        s += f", groups={self.groups}" if self.groups != 1 else ""
        s += ", bias=False" if self.bias is None else ""
        return s + ")"
